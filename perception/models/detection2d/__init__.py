"""2D object detectors for backbone pretraining: DINO-4scale (:class:`DINO`, registered in MODELS).

The shared DETR pieces (decoder, encoder, matcher, criterion, denoising groups) live in ``perception.models.detr``.
"""

from .dino import DINO

__all__ = ["DINO"]
