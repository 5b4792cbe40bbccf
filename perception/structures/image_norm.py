"""The image normalisation statistics of the BEV models, defined once: RGB, on the 0..255 scale.

The BEV loader ships uint8 images and the model normalises them on its device (bev/spine.py
``normalize_images``); the loader's optional CPU step ``NormalizeMultiViewImages``
(perception/data/transforms_bev.py) uses the same defaults (docs/data.md "Loader speed")."""

from __future__ import annotations

IMAGENET_MEAN = (123.675, 116.28, 103.53)
IMAGENET_STD = (58.395, 57.12, 57.375)
