"""Looking inside a ViT GAN: what D's class token and G's tokens attend to, where D's score is
sensitive, drawn over the images (``vitgan inspect``, the run folder's attention<nimg>.png).

    maps.py    the numbers: class-token attention, attention rollout, G's token attention,
               input-gradient saliency (torch; layers' reference ``probabilities`` path)
    draw.py    the pictures: heat maps over images, labelled grids (numpy, PIL)
    figures.py one grid per kind, from maps' numbers
    page.py    index.html: the grids side by side with the run's options and metrics
"""
