"""The run folder on disk: what a training run leaves and everything that reads it.

- ``layout``: the names in a run folder (and an export folder), choosing, creating and claiming a
  new one, ``is_run_folder``, reading its JSON lines.
- ``writer``: ``RunFiles``, every write of a training process into its folder (rank 0).
- ``lock``: ``RunLock``, one writer per run folder (``filelock``), ``refuse_if_locked``.
- ``checkpoint``: rolling checkpoints (safetensors weights, weights-only state, manifest last).
- ``snapshots``: permanent snapshot names and the sha256 inside every weights file.
- ``options_file``: training_options.json: read back, current options, resume records.
- ``source``: ``open_run(path)``: a run folder, checkpoint, snapshot or export -> ``Source``
  (G, D, config, options, metric rows, origin), for ``vitgan sample``, ``eval``, ``export`` and
  ``inspect``.

Below ``train`` (which writes runs through it) and above ``models``: reading a run is not training,
so nothing here imports ``vitgan.train``. Submodules are imported where they are used.
"""
