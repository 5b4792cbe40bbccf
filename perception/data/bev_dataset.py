"""The BEV dataset of any camera rig (nuScenes, the synthetic world, Waymo-like rigs) and its collate
function.

The rig (camera names in order, native image sizes) comes from the info file's metadata; cameras may
differ in image size. Ground truth comes from the label types named in ``labels``
(:mod:`perception.data.labels`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from mmengine.registry import FUNCTIONS
from torch.utils.data import Dataset

from perception.engine.registry import DATASETS, TRANSFORMS
from perception.structures.classes import DETECTION_CLASSES

from .infos import load_infos
from .labels import LabelType, build_label_types, label_type_of_key
from .memory import worker_shareable_empty


def build_pipeline(pipeline: Sequence[dict | Callable]) -> list[Callable]:
    return [TRANSFORMS.build(t) if isinstance(t, dict) else t for t in pipeline]


@DATASETS.register_module()
class BEVDataset(Dataset):
    """Samples of an info file (see :mod:`perception.data.infos`) as the sample dict of
    docs/architecture.md, through ``pipeline``.

    Args:
        ann_file: info file (ours, or mmdet3d 1.x / BEVFormer infos, converted on load).
        data_root: folder the info paths are relative to.
        pipeline: transform configs (TRANSFORMS) or callables; the last one usually ``PackBEVInputs``.
        num_frames: T, the current frame plus T-1 previous key frames of the same scene. Before a scene
            start the slot repeats the nearest later frame and ``history_valid`` is False.
        with_gt: load the ground truth named in ``labels`` (False: none, e.g. for a test split).
        filter_invalid, classes: for the ``boxes`` label type: keep boxes of ``classes`` and, with
            ``filter_invalid``, with LiDAR/radar points.
        labels: label types to load in :meth:`get_data_info`, by registered name or as config dicts
            ``dict(type=name, **kwargs)`` (``boxes``, ``boxes_2d``, ``occupancy``, ``lanes``, or any
            registered later). The default loads the 3D boxes only.
        load_interval: keep every n-th sample (history frames are still taken from all samples).
    """

    def __init__(
        self,
        ann_file: str,
        data_root: str,
        pipeline: Sequence[dict | Callable] = (),
        num_frames: int = 1,
        with_gt: bool = True,
        filter_invalid: bool = True,
        classes: Sequence[str] = DETECTION_CLASSES,
        labels: Sequence[str | dict | LabelType] = ("boxes",),
        load_interval: int = 1,
        test_mode: bool = False,
    ) -> None:
        super().__init__()
        if num_frames < 1:
            raise ValueError(f"num_frames must be >= 1, got {num_frames}")
        self.ann_file, self.data_root = str(ann_file), Path(data_root)
        self.metadata, self.infos = load_infos(ann_file)
        self.cameras = tuple(self.metadata["cameras"])
        self.image_sizes = {c: tuple(s) for c, s in self.metadata.get("image_sizes", {}).items()}
        self.num_frames, self.with_gt, self.filter_invalid = num_frames, with_gt, filter_invalid
        self.classes, self.test_mode = tuple(classes), test_mode
        self.label_types = build_label_types(labels)
        for label in self.label_types.values():
            label.setup(self)
        self.pipeline = build_pipeline(pipeline)
        self.index_of = {info["token"]: i for i, info in enumerate(self.infos)}
        self.indices = list(range(0, len(self.infos), load_interval))
        self.metainfo = dict(
            classes=self.classes,
            version=self.metadata.get("version"),
            cameras=self.cameras,
            image_sizes=self.image_sizes,
        )

    def __len__(self) -> int:
        return len(self.indices)

    def history(self, index: int) -> list[tuple[int, bool]]:
        """(info index, valid) for the T frames ending at ``index``, oldest first."""
        chain, current = [], index
        for _ in range(self.num_frames - 1):
            prev = self.infos[current]["prev"]
            if not prev or prev not in self.index_of or self.infos[current]["frame_index"] == 0:
                break
            current = self.index_of[prev]
            chain.append(current)
        chain = chain[::-1]
        missing = self.num_frames - 1 - len(chain)
        first = chain[0] if chain else index
        return [(first, False)] * missing + [(i, True) for i in chain] + [(index, True)]

    def _frame(self, info: dict, current: dict, valid: bool) -> dict:
        cams = [info["cams"][c] for c in self.cameras]
        ego2global = np.asarray(info["ego2global"], dtype=np.float64)
        prev2curr = np.linalg.inv(np.asarray(current["ego2global"], dtype=np.float64)) @ ego2global
        return dict(
            token=info["token"],
            valid=valid,
            img_paths=[str(self.data_root / c["data_path"]) for c in cams],
            intrinsics=np.stack([c["intrinsics"] for c in cams]).astype(np.float64),
            cam2ego=np.stack([c["cam2ego"] for c in cams]).astype(np.float64),
            ego2img=np.stack([c["ego2img"] for c in cams]).astype(np.float64),
            img_aug=np.tile(np.eye(4), (len(cams), 1, 1)),
            ego2global=ego2global,
            prev2curr=prev2curr,
        )

    def get_data_info(self, idx: int) -> dict:
        index = self.indices[idx]
        info = self.infos[index]
        results = dict(
            sample_token=info["token"],
            scene_token=info["scene_token"],
            timestamp=info["timestamp"],
            frame_index=info["frame_index"],
            cameras=list(self.cameras),
            bev_aug=np.eye(4),
            frames=[self._frame(self.infos[i], info, valid) for i, valid in self.history(index)],
        )
        # Absolute label paths, for the LoadOccupancy / LoadLanes transforms.
        for key in ("occ_path", "openlane_path"):
            results[key] = str(self.data_root / info[key]) if info.get(key) else None
        if self.with_gt:
            results["label_types"] = dict(self.label_types)
            for label in self.label_types.values():
                label.load(results, info, str(self.data_root))
        return results

    def __getitem__(self, idx: int) -> dict:
        results = self.get_data_info(idx)
        for transform in self.pipeline:
            results = transform(results)
        return results


# Configs (and older code) name the dataset after nuScenes.
DATASETS.register_module(name="NuScenesBEVDataset", module=BEVDataset)
NuScenesBEVDataset = BEVDataset


def _stack_nested(values: list):
    first = values[0]
    if isinstance(first, torch.Tensor):
        return torch.stack(values)
    if isinstance(first, dict):
        return {k: _stack_nested([v[k] for v in values]) for k in first}
    return list(values)


def _stack_padded(images: list[torch.Tensor], height: int, width: int) -> torch.Tensor:
    """Stack (..., h, w) images into one (B, ..., height, width) tensor, each zero-padded bottom/right,
    written once into the batch buffer. One image of the batch's size is taken as it is (a view with the
    batch axis): ``PackBEVInputs`` already wrote it where a worker shares it from (``worker_shareable_empty``)."""
    first = images[0]
    if len(images) == 1 and tuple(first.shape[-2:]) == (height, width):
        if torch.utils.data.get_worker_info() is None or first.is_shared():
            return first.unsqueeze(0)
    out = worker_shareable_empty((len(images), *first.shape[:-2], height, width), first.dtype)
    for i, img in enumerate(images):
        h, w = img.shape[-2:]
        if (h, w) != (height, width):
            out[i].zero_()
        out[i, ..., :h, :w].copy_(img)
    return out


@FUNCTIONS.register_module(name="bev_collate")
def bev_collate(batch: list[dict]) -> dict:
    """Batch sample dicts: ``img`` (B, T, Ncam, 3, H, W) of the samples' dtype (uint8 from the BEV
    configs' pipelines), in shared memory inside DataLoader workers, zero-padded bottom/right to the batch's largest
    size when samples differ (``ego2img`` stays valid; ``cams['valid_hw']`` (B, T, Ncam, 2) keeps each
    camera's real region, ``cams['pad_shape']`` becomes the batch's (H, W) = ``img.shape[-2:]``,
    ``cams['img_shape']`` a list of the samples' tuples); the other ``cams``/``ego`` tensors are
    stacked; ``meta`` becomes a list of dicts. Ground truth is collated by its label type (stacked, e.g.
    occupancy, or per-sample lists, e.g. boxes, lanes, traffic elements, topology); keys of no label type
    become lists."""
    height = max(int(s["img"].shape[-2]) for s in batch)
    width = max(int(s["img"].shape[-1]) for s in batch)
    cams = _stack_nested([s["cams"] for s in batch])
    cams["pad_shape"] = (height, width)
    out = dict(
        img=_stack_padded([s["img"] for s in batch], height, width),
        cams=cams,
        ego=_stack_nested([s["ego"] for s in batch]),
        meta=[s["meta"] for s in batch],
    )
    for key in batch[0]:
        if key in out:
            continue
        values = [s[key] for s in batch]
        owner = label_type_of_key(key)
        out[key] = owner.collate(key, values) if owner is not None else values
    return out
