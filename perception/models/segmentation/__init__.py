"""Semantic segmentation (docs/pretraining_2d.md, "Segmentation (UperNet)"): the UperNet decode head with
its FCN auxiliary head, and the encoder-decoder segmentor with whole-image and sliding-window inference.
Importing registers ``UPerHead``, ``FCNHead``, ``EncoderDecoderSegmentor`` and ``SegDataPreprocessor``."""

from .heads import ConvBNReLU, FCNHead, PyramidPoolingModule, UPerHead
from .segmentor import EncoderDecoderSegmentor, SegDataPreprocessor, segmentation_loss, sliding_window_logits

__all__ = [
    "ConvBNReLU",
    "EncoderDecoderSegmentor",
    "FCNHead",
    "PyramidPoolingModule",
    "SegDataPreprocessor",
    "UPerHead",
    "segmentation_loss",
    "sliding_window_logits",
]
