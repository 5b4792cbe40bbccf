"""The graphs tools/export.py exports and how their example inputs are made (not a public module;
docs/deployment.md). Shared with tools/benchmark_export.py."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from _cli import UsageError
from _runner_common import register_all
from torch import Tensor, nn

__all__ = ["BEVGraph", "BackboneGraph", "ClassifierGraph", "Detector2DGraph", "SegmentorGraph", "build",
           "graph_and_inputs", "head_outputs", "nominal_ego2img"]


class ClassifierGraph(nn.Module):
    """image -> logits of an InternImage classifier."""

    def __init__(self, classifier: nn.Module) -> None:
        super().__init__()
        self.classifier = classifier

    def forward(self, image: Tensor) -> Tensor:
        return self.classifier(image)


class BackboneGraph(nn.Module):
    """image -> the backbone's feature maps (a tuple)."""

    def __init__(self, backbone: nn.Module) -> None:
        super().__init__()
        self.backbone = backbone

    def forward(self, image: Tensor) -> tuple[Tensor, ...]:
        from backbones import InternImage

        return tuple(InternImage.forward(self.backbone, image))


class BEVGraph(nn.Module):
    """The current-frame path of a BEVFormerV2 model with the history BEVs as inputs (see the module
    docstring). Same computation as the model's spine and heads for unmirrored, unpadded cameras."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.spine = model.spine
        self.output_names = ["bev"]

    @property
    def takes_history(self) -> bool:
        return self.spine.fusion is not None

    def forward(self, img: Tensor, ego2img: Tensor, valid_hw: Tensor, history: Tensor | None = None,
                history_valid: Tensor | None = None) -> tuple[Tensor, ...]:
        from bev.spine import SpineOutput, feature_valid_region
        from bev.temporal import fill_missing_history

        b = img.shape[0]
        image_size = tuple(img.shape[-2:])
        region = feature_valid_region(dict(valid_hw=valid_hw), None, image_size)
        features = self.spine.image_features(img)
        bev = self.spine.encoder(self.spine._per_camera(features, b), ego2img, image_size, region)
        fused = bev
        if self.takes_history:
            current_valid = torch.ones_like(history_valid[:, :1])
            bevs = fill_missing_history([*history.unbind(1), bev], torch.cat([history_valid, current_valid], 1))
            fused = self.spine.fusion(bevs)
        spine = SpineOutput(bev=fused, features=features, ego2img=ego2img, image_size=image_size,
                            valid_region=region, grid=self.spine.grid)
        outputs = [bev]
        for name, head in self.model.heads.items():
            outputs.extend(value for _, value in head_outputs(name, head, head(spine)))
        return tuple(outputs)


class Detector2DGraph(nn.Module):
    """image (B, 3, H, W), normalised, every pixel a real one -> the DINO detector's fixed top-k: ``boxes``
    (B, k, 4) xyxy in input pixels clipped to the input, ``scores`` and ``labels`` (B, k); k =
    ``max_detections``. Two-stage query selection with its fixed top-k, no denoising queries (inference)."""

    def __init__(self, detector: nn.Module) -> None:
        super().__init__()
        self.detector = detector

    def forward(self, image: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        from perception.structures.boxes2d import clip_boxes

        canvas = tuple(image.shape[-2:])
        memory = self.detector.encode(image, None)  # every pixel real at the fixed size: no padding mask
        _, reference = self.detector.select_queries(memory)
        last = self.detector.decode(memory, reference, None)[-1]
        boxes, scores, labels = self.detector.decode_topk(last["logits"], last["boxes"], canvas)
        return clip_boxes(boxes, canvas), scores, labels


class SegmentorGraph(nn.Module):
    """image (B, 3, H, W), normalised -> ``logits`` (B, classes, H, W): the segmentor's whole-image inference."""

    def __init__(self, segmentor: nn.Module) -> None:
        super().__init__()
        self.segmentor = segmentor

    def forward(self, image: Tensor) -> Tensor:
        return self.segmentor.logits(image)


def head_outputs(name: str, head: nn.Module, outputs: Any) -> list[tuple[str, Tensor]]:
    """The named tensors a head contributes to the graph: the detection decoder's fixed top-k, else
    every tensor of the head's outputs (dicts and lists flattened into dotted names)."""
    decoder = getattr(head, "decoder", None)
    if hasattr(decoder, "decode_topk"):
        boxes, scores, labels, inside = decoder.decode_topk(outputs["layers"])
        return [(f"{name}.boxes", boxes), (f"{name}.scores", scores), (f"{name}.labels", labels),
                (f"{name}.inside", inside)]
    return list(_tensors(name, outputs))


def _tensors(prefix: str, value: Any) -> Iterator[tuple[str, Tensor]]:
    if isinstance(value, Tensor):
        yield prefix, value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _tensors(f"{prefix}.{key}", item)
    elif isinstance(value, list | tuple):
        for i, item in enumerate(value):
            yield from _tensors(f"{prefix}.{i}", item)


# -- building -----------------------------------------------------------------------------------------
def build(config: str, checkpoint: str) -> tuple[nn.Module, Any]:
    """The config's model in eval mode, with the checkpoint's weights unless ``checkpoint == 'random'``."""
    from mmengine.config import Config
    from mmengine.runner import load_checkpoint

    from perception.engine import MODELS

    if not Path(config).is_file():
        raise UsageError(f"config {config} does not exist")
    register_all()
    cfg = Config.fromfile(config)
    model = MODELS.build(cfg.model)
    if checkpoint != "random":
        if not Path(checkpoint).is_file():
            raise UsageError(f"checkpoint {checkpoint} does not exist (or pass 'random' for random weights)")
        load_checkpoint(model, checkpoint, map_location="cpu", strict=True)
    return model.eval(), cfg


def nominal_ego2img(height: int, width: int, cameras: int) -> Tensor:
    """(cameras, 4, 4) ego->pixel matrices of the synthetic world's nuScenes-like rig at this size."""
    from perception.data.synthetic.generator import camera_intrinsics, camera_to_ego
    from perception.structures.cameras import CAMERA_NAMES, compose_ego2img

    names = CAMERA_NAMES[:cameras]
    mats = [compose_ego2img(camera_intrinsics(name, (width, height)), camera_to_ego(name)) for name in names]
    return torch.tensor(np.stack(mats), dtype=torch.float32)


def _parse_resolution(resolution: str) -> tuple[int, int]:
    try:
        height, width = (int(v) for v in resolution.lower().split("x"))
    except ValueError as err:
        raise UsageError(f"--resolution must be HxW, got {resolution!r}") from err
    if height < 1 or width < 1:
        raise UsageError(f"--resolution must be positive, got {resolution!r}")
    return height, width


def _bev_image_size(cfg, resolution: str | None) -> tuple[int, int]:
    """(H, W) of the network input: ``--resolution`` or the config's ``image_size`` (w, h), padded to 32."""
    if resolution is not None:
        height, width = _parse_resolution(resolution)
    elif cfg.get("image_size") is not None:
        width, height = cfg.image_size
    else:
        raise UsageError("the config has no image_size; give --resolution HxW")
    return -(-height // 32) * 32, -(-width // 32) * 32


def graph_and_inputs(model: nn.Module, cfg, part: str, batch: int, size: int | None, resolution: str | None
                     ) -> tuple[nn.Module, list[Tensor], list[str], list[str]]:
    """The module to export, example inputs (random, seeded) and the input and output names."""
    gen = torch.Generator().manual_seed(0)
    if hasattr(model, "spine"):
        if part != "model":
            raise UsageError(f"--part {part} is for classification configs; a BEV model exports whole")
        return _bev_graph(model, gen, batch, _bev_image_size(cfg, resolution))
    if hasattr(model, "select_queries") or hasattr(model, "decode_head"):
        if part != "model":
            raise UsageError(f"--part {part} is for classification configs; a 2D detector or segmentor exports whole")
        return _image_2d_graph(model, gen, batch, _image_size_2d(cfg, resolution))
    classifier = getattr(model, "backbone", model)
    side = size or 224
    image = torch.randn(batch, 3, side, side, generator=gen)
    if part == "backbone":
        names = [f"stage{i}" for i in classifier.out_indices]
        return BackboneGraph(classifier), [image], ["image"], names
    if not hasattr(classifier, "head"):
        raise UsageError(f"{type(classifier).__name__} has no classification head; use --part backbone")
    return ClassifierGraph(classifier), [image], ["image"], ["logits"]


def _bev_graph(model: nn.Module, gen: torch.Generator, batch: int, image_size: tuple[int, int]):
    graph = BEVGraph(model)
    encoder = model.spine.encoder
    cameras = encoder.camera_embeds.shape[0]
    height, width = image_size
    img = torch.randn(batch, cameras, 3, height, width, generator=gen)
    ego2img = nominal_ego2img(height, width, cameras).expand(batch, -1, -1, -1).clone()
    valid_hw = torch.tensor([height, width]).expand(batch, cameras, 2).clone()  # images fill the input
    inputs, names = [img, ego2img, valid_hw], ["img", "ego2img", "valid_hw"]
    if graph.takes_history:
        frames = model.spine.num_frames
        history = torch.randn(batch, frames - 1, encoder.embed_dims, encoder.nx, encoder.ny, generator=gen)
        inputs += [history, torch.ones(batch, frames - 1, dtype=torch.bool)]
        names += ["history", "history_valid"]
    with torch.no_grad():
        spine_names = _output_names(model, graph, inputs)
    return graph, inputs, names, spine_names


def _output_names(model: nn.Module, graph: BEVGraph, inputs: list[Tensor]) -> list[str]:
    """Output names in the order BEVGraph returns them (a head's raw outputs are named by their path)."""
    names = ["bev"]
    calls = []
    hooks = [head.register_forward_hook(lambda mod, args, out, name=name: calls.append((name, mod, out)))
             for name, head in model.heads.items()]
    try:
        graph(*inputs)
    finally:
        for hook in hooks:
            hook.remove()
    for name, head, out in calls:
        names.extend(n for n, _ in head_outputs(name, head, out))
    return names


# -- 2D heads -----------------------------------------------------------------------------------------
DEFAULT_2D_SIZE = (512, 512)


def _image_size_2d(cfg, resolution: str | None) -> tuple[int, int]:
    """(H, W) of a 2D model's static input: ``--resolution``, else the config's ``crop_size``, else 512x512;
    padded to 32 (the backbone's coarsest stride)."""
    if resolution is not None:
        height, width = _parse_resolution(resolution)
    else:
        height, width = tuple(cfg.get("crop_size") or DEFAULT_2D_SIZE)
    return -(-height // 32) * 32, -(-width // 32) * 32


def _image_2d_graph(model: nn.Module, gen: torch.Generator, batch: int, image_size: tuple[int, int]):
    image = torch.randn(batch, 3, *image_size, generator=gen)
    if hasattr(model, "select_queries"):
        return Detector2DGraph(model), [image], ["image"], ["boxes", "scores", "labels"]
    if model.test_mode != "whole":
        raise UsageError(f"the segmentor's test_mode={model.test_mode!r} (sliding-window inference) loops over "
                         "windows in Python: export it with test_mode='whole' (one pass at the fixed input size)")
    return SegmentorGraph(model), [image], ["image"], ["logits"]
