"""Encoder-decoder semantic segmentor for mmengine (backbone -> decode head [+ auxiliary head]), its data
preprocessor, and whole-image / sliding-window inference (docs/pretraining_2d.md, "Segmentation").

Data (from :func:`perception.data.segmentation.seg_collate`): ``inputs`` is a list of uint8 (3, H, W) RGB
tensors and ``data_samples`` a list of dicts (``gt_seg`` (H, W) labels, ``ori_shape``, ``img_path``, ...).
:class:`SegDataPreprocessor` normalises and pads them into one (B, 3, H, W) batch.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from mmengine.model import BaseDataPreprocessor, BaseModel
from torch import Tensor

from perception.engine.registry import MODELS, register_lower_layers

from .heads import resize_bilinear

__all__ = ["EncoderDecoderSegmentor", "SegDataPreprocessor", "segmentation_loss", "sliding_window_logits"]

IGNORE_INDEX = 255
IMAGENET_MEAN_255 = (123.675, 116.28, 103.53)
IMAGENET_STD_255 = (58.395, 57.12, 57.375)


def _padded_size(sizes: Sequence[tuple[int, int]], size: Sequence[int] | None, divisor: int | None) -> tuple[int, int]:
    height = max([h for h, _ in sizes] + ([size[0]] if size else []))
    width = max([w for _, w in sizes] + ([size[1]] if size else []))
    if divisor:
        height, width = -(-height // divisor) * divisor, -(-width // divisor) * divisor
    return height, width


@MODELS.register_module()
class SegDataPreprocessor(BaseDataPreprocessor):
    """Normalises RGB uint8 images with ``mean``/``std`` (0-255 scale) and pads the batch at the bottom and
    right to a common size: the largest image, in training at least ``size`` (the crop), rounded up to
    ``size_divisor``. Test batches are not padded to ``size``: the pooling of the PPM would average padding.

    Images are padded with ``pad_val`` after normalisation; in training the labels are padded with
    ``seg_pad_val`` (ignored by the loss). Each data sample gets ``img_shape`` (its real rows and
    columns in the batch) and ``pad_shape``.
    """

    def __init__(self, mean: Sequence[float] = IMAGENET_MEAN_255, std: Sequence[float] = IMAGENET_STD_255,
                 size: Sequence[int] | None = None, size_divisor: int | None = None, pad_val: float = 0.0,
                 seg_pad_val: int = IGNORE_INDEX, non_blocking: bool = False) -> None:
        super().__init__(non_blocking)
        if len(mean) != 3 or len(std) != 3:
            raise ValueError(f"SegDataPreprocessor: mean and std need 3 values (RGB), got {mean} and {std}")
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(-1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(-1, 1, 1), persistent=False)
        self.size = tuple(size) if size is not None else None
        self.size_divisor, self.pad_val, self.seg_pad_val = size_divisor, pad_val, seg_pad_val

    def forward(self, data: dict, training: bool = False) -> dict[str, Any]:
        data = self.cast_data(data)
        images = data["inputs"]
        images = list(images) if isinstance(images, Tensor) and images.dim() == 4 else images
        if not isinstance(images, list | tuple) or not images:
            raise ValueError("SegDataPreprocessor: 'inputs' must be a non-empty list of (3, H, W) images")
        samples = [dict(s) for s in (data.get("data_samples") or [{} for _ in images])]
        if len(samples) != len(images):
            raise ValueError(f"SegDataPreprocessor: {len(images)} images but {len(samples)} data samples")
        sizes = [tuple(img.shape[-2:]) for img in images]
        height, width = _padded_size(sizes, self.size if training else None, self.size_divisor)
        batch = []
        for img, (h, w), sample in zip(images, sizes, samples):
            if img.dim() != 3 or img.shape[0] != 3:
                raise ValueError(f"SegDataPreprocessor: images must be (3, H, W), got {tuple(img.shape)}")
            normalised = (img.float() - self.mean) / self.std
            batch.append(F.pad(normalised, (0, width - w, 0, height - h), value=self.pad_val))
            sample.setdefault("ori_shape", (h, w))
            sample.update(img_shape=(h, w), pad_shape=(height, width))
            if training and "gt_seg" in sample:
                gt = torch.as_tensor(sample["gt_seg"]).long()
                if tuple(gt.shape) != (h, w):
                    raise ValueError(f"SegDataPreprocessor: gt_seg {tuple(gt.shape)} does not match the image "
                                     f"{(h, w)} of {sample.get('img_path', 'a sample')}")
                sample["gt_seg"] = F.pad(gt, (0, width - w, 0, height - h), value=self.seg_pad_val)
        return {"inputs": torch.stack(batch), "data_samples": samples}


def segmentation_loss(logits: Tensor, labels: Tensor, ignore_index: int = IGNORE_INDEX,
                      avg_non_ignore: bool = False) -> Tensor:
    """Pixel cross-entropy of logits upsampled to the labels' size. Ignored pixels add nothing; the sum
    is divided by every pixel (mmseg's default) or, with ``avg_non_ignore``, by the labelled ones."""
    logits = resize_bilinear(logits, labels.shape[-2:]).float()
    per_pixel = F.cross_entropy(logits, labels, ignore_index=ignore_index, reduction="none")
    count = (labels != ignore_index).sum().clamp(min=1) if avg_non_ignore else labels.numel()
    return per_pixel.sum() / count


def sliding_window_logits(inputs: Tensor, logits_fn: Callable[[Tensor], Tensor], num_classes: int,
                          crop_size: Sequence[int], stride: Sequence[int]) -> Tensor:
    """Logits of ``inputs`` (B, 3, H, W) from overlapping ``crop_size`` windows every ``stride`` pixels
    (the last row/column of windows is shifted back to end at the border); where windows overlap their
    logits are averaged. ``logits_fn`` maps a crop to logits at the crop's size."""
    crop_h, crop_w = crop_size
    stride_h, stride_w = stride
    if min(crop_h, crop_w, stride_h, stride_w) < 1:
        raise ValueError(f"sliding window: crop_size {tuple(crop_size)} and stride {tuple(stride)} must be >= 1")
    batch, _, height, width = inputs.shape
    rows = max(height - crop_h + stride_h - 1, 0) // stride_h + 1
    cols = max(width - crop_w + stride_w - 1, 0) // stride_w + 1
    total = inputs.new_zeros(batch, num_classes, height, width, dtype=torch.float32)
    count = inputs.new_zeros(1, 1, height, width, dtype=torch.float32)
    for row in range(rows):
        for col in range(cols):
            y1, x1 = row * stride_h, col * stride_w
            y2, x2 = min(y1 + crop_h, height), min(x1 + crop_w, width)
            y1, x1 = max(y2 - crop_h, 0), max(x2 - crop_w, 0)
            total[:, :, y1:y2, x1:x2] += logits_fn(inputs[:, :, y1:y2, x1:x2]).float()
            count[:, :, y1:y2, x1:x2] += 1
    return total / count


def _preprocessor_cfg(cfg: dict | None) -> dict:
    """The preprocessor config with its type resolved in this project's registry: mmengine's BaseModel
    builds it from the root registry, which does not see the ``perception`` scope outside a Runner."""
    cfg = dict(cfg or {"type": "SegDataPreprocessor"})
    if isinstance(cfg.get("type"), str) and MODELS.get(cfg["type"]) is not None:
        cfg["type"] = MODELS.get(cfg["type"])
    return cfg


@MODELS.register_module()
class EncoderDecoderSegmentor(BaseModel):
    """Semantic segmentor: backbone levels -> ``decode_head`` (e.g. :class:`UPerHead`), plus an optional
    ``auxiliary_head`` (e.g. :class:`FCNHead`) trained with ``aux_loss_weight``.

    Args:
        backbone: config of a module returning a list of NCHW levels (``type='InternImage'``).
        decode_head, auxiliary_head: head configs; ``in_channels`` left out come from the backbone's
            ``out_channels`` (all levels for the decode head, level ``in_index`` for the auxiliary one),
            ``num_classes`` left out from ``num_classes``.
        num_classes: classes of the label maps (labels 0..num_classes-1; ``ignore_index`` is ignored).
        aux_loss_weight: weight of the auxiliary cross-entropy (0.4 in the UperNet recipe).
        avg_non_ignore: average the loss over labelled pixels only (mmseg's default divides by all).
        test_mode: ``'whole'`` (one pass over the padded image) or ``'slide'`` (``crop_size`` windows every
            ``stride`` pixels, overlapping logits averaged).
    ``mode='loss'`` -> ``{'decode.loss_ce', 'aux.loss_ce', 'decode.acc_seg'}``; ``'predict'`` -> one dict
    per image with ``pred_seg`` (H, W) int64 at ``ori_shape`` (plus ``gt_seg`` and ``img_path`` when the
    sample has them); ``'tensor'`` -> logits (B, C, H, W) at the input size.
    """

    def __init__(self, backbone: dict, decode_head: dict, num_classes: int, auxiliary_head: dict | None = None,
                 aux_loss_weight: float = 0.4, ignore_index: int = IGNORE_INDEX, avg_non_ignore: bool = False,
                 test_mode: str = "whole", crop_size: Sequence[int] | None = None,
                 stride: Sequence[int] | None = None, data_preprocessor: dict | None = None,
                 init_cfg: dict | None = None) -> None:
        super().__init__(data_preprocessor=_preprocessor_cfg(data_preprocessor), init_cfg=init_cfg)
        if test_mode not in ("whole", "slide"):
            raise ValueError(f"EncoderDecoderSegmentor: test_mode must be 'whole' or 'slide', got {test_mode!r}")
        if test_mode == "slide" and (crop_size is None or stride is None):
            raise ValueError("EncoderDecoderSegmentor: test_mode='slide' needs crop_size and stride")
        register_lower_layers()
        self.backbone = MODELS.build(backbone)
        levels = tuple(getattr(self.backbone, "out_channels", ()) or ())
        self.num_classes = num_classes
        self.decode_head = MODELS.build(self._head_defaults(decode_head, levels))
        self.auxiliary_head = None
        if auxiliary_head is not None:
            self.auxiliary_head = MODELS.build(self._head_defaults(auxiliary_head, levels, auxiliary=True))
        self.aux_loss_weight, self.ignore_index, self.avg_non_ignore = aux_loss_weight, ignore_index, avg_non_ignore
        self.test_mode = test_mode
        self.crop_size = tuple(crop_size) if crop_size is not None else None
        self.stride = tuple(stride) if stride is not None else None

    def _head_defaults(self, head: dict, levels: tuple[int, ...], auxiliary: bool = False) -> dict:
        cfg = dict(head)
        cfg.setdefault("num_classes", self.num_classes)
        if cfg.get("in_channels") is None:
            if not levels:
                raise ValueError(f"{cfg.get('type')}: no in_channels and the backbone declares no out_channels")
            cfg["in_channels"] = levels[cfg.get("in_index", 2)] if auxiliary else list(levels)
        return cfg

    def extract_features(self, inputs: Tensor) -> list[Tensor]:
        return list(self.backbone(inputs))

    def logits(self, inputs: Tensor) -> Tensor:
        """Decode-head logits upsampled to the size of ``inputs``."""
        return resize_bilinear(self.decode_head(self.extract_features(inputs)), inputs.shape[-2:])

    def inference(self, inputs: Tensor) -> Tensor:
        """Logits (B, C, H, W) at the input size, by the configured ``test_mode``."""
        if self.test_mode == "slide":
            return sliding_window_logits(inputs, self.logits, self.num_classes, self.crop_size, self.stride)
        return self.logits(inputs)

    def loss(self, inputs: Tensor, data_samples: Sequence[dict]) -> dict[str, Tensor]:
        try:
            labels = torch.stack([torch.as_tensor(s["gt_seg"]) for s in data_samples]).long().to(inputs.device)
        except KeyError as err:
            raise ValueError("EncoderDecoderSegmentor: mode='loss' needs gt_seg in every data sample") from err
        features = self.extract_features(inputs)
        decode = self.decode_head(features)
        losses = {"decode.loss_ce": segmentation_loss(decode, labels, self.ignore_index, self.avg_non_ignore)}
        if self.auxiliary_head is not None:
            aux = segmentation_loss(self.auxiliary_head(features), labels, self.ignore_index, self.avg_non_ignore)
            losses["aux.loss_ce"] = self.aux_loss_weight * aux
        with torch.no_grad():
            valid = labels != self.ignore_index
            hits = (resize_bilinear(decode, labels.shape[-2:]).argmax(1) == labels) & valid
            losses["decode.acc_seg"] = 100.0 * hits.sum() / valid.sum().clamp(min=1)
        return losses

    def predict(self, inputs: Tensor, data_samples: Sequence[dict] | None = None) -> list[dict[str, Any]]:
        logits = self.inference(inputs)
        samples = data_samples or [{} for _ in range(len(inputs))]
        results = []
        for logit, sample in zip(logits, samples):
            h, w = sample.get("img_shape", logit.shape[-2:])
            ori_shape = tuple(sample.get("ori_shape", (h, w)))
            logit = resize_bilinear(logit[None, :, :h, :w], ori_shape)[0]
            result = {"pred_seg": logit.argmax(0)}
            result.update({k: sample[k] for k in ("gt_seg", "img_path", "seg_path") if k in sample})
            results.append(result)
        return results

    def forward(self, inputs: Tensor, data_samples: Sequence[dict] | None = None, mode: str = "tensor") -> Any:
        if mode == "loss":
            if data_samples is None:
                raise ValueError("EncoderDecoderSegmentor: mode='loss' needs data_samples with gt_seg")
            return self.loss(inputs, data_samples)
        if mode == "predict":
            return self.predict(inputs, data_samples)
        if mode == "tensor":
            return self.inference(inputs)
        raise ValueError(f"mode must be 'loss', 'predict' or 'tensor', got {mode!r}")
