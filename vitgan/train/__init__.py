"""Training: options, DiffAugment, the loss with phases (bCR, R1, LeCam), EMA, the Trainer, its
run state (the files are vitgan.runs'), reporting, the loop and its replica checks.

Submodules are imported where they are used (``from vitgan.train.loss import ViTGANLoss``);
this package imports nothing heavy on its own.
"""
