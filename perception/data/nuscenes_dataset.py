"""The nuScenes-format BEV dataset (real nuScenes and the synthetic world) and its collate function."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from mmengine.registry import FUNCTIONS
from torch.utils.data import Dataset

from perception.engine.registry import DATASETS, TRANSFORMS
from perception.structures.cameras import CAMERA_NAMES
from perception.structures.classes import DETECTION_CLASSES

from .infos import load_infos


def build_pipeline(pipeline: Sequence[dict | Callable]) -> list[Callable]:
    return [TRANSFORMS.build(t) if isinstance(t, dict) else t for t in pipeline]


@DATASETS.register_module()
class NuScenesBEVDataset(Dataset):
    """Samples of an info file (see :mod:`perception.data.infos`) as the sample dict of
    docs/architecture.md, through ``pipeline``.

    Args:
        ann_file: info file (ours, or mmdet3d 1.x / BEVFormer infos, converted on load).
        data_root: folder the info paths are relative to.
        pipeline: transform configs (TRANSFORMS) or callables; the last one usually ``PackBEVInputs``.
        num_frames: T, the current frame plus T-1 previous key frames of the same scene. Before a scene
            start the slot repeats the nearest later frame and ``history_valid`` is False.
        with_gt: attach ``gt_boxes``/``gt_labels`` (boxes with LiDAR/radar points and a detection class
            only when ``filter_invalid``).
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
        load_interval: int = 1,
        test_mode: bool = False,
    ) -> None:
        super().__init__()
        if num_frames < 1:
            raise ValueError(f"num_frames must be >= 1, got {num_frames}")
        self.ann_file, self.data_root = str(ann_file), Path(data_root)
        self.metadata, self.infos = load_infos(ann_file)
        self.num_frames, self.with_gt, self.filter_invalid = num_frames, with_gt, filter_invalid
        self.classes, self.test_mode = tuple(classes), test_mode
        self.pipeline = build_pipeline(pipeline)
        self.index_of = {info["token"]: i for i, info in enumerate(self.infos)}
        self.indices = list(range(0, len(self.infos), load_interval))
        self.metainfo = dict(classes=self.classes, version=self.metadata.get("version"))

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
        cams = [info["cams"][c] for c in CAMERA_NAMES]
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
            bev_aug=np.eye(4),
            frames=[self._frame(self.infos[i], info, valid) for i, valid in self.history(index)],
        )
        for key in ("occ_path", "openlane_path"):
            results[key] = str(self.data_root / info[key]) if info.get(key) else None
        if self.with_gt and "gt_boxes" in info:
            keep = np.isin(np.asarray(info["gt_names"]), self.classes)
            if self.filter_invalid:
                keep &= np.asarray(info["valid_flag"], dtype=bool)
            names = np.asarray(info["gt_names"])[keep]
            results["gt_boxes"] = np.asarray(info["gt_boxes"], dtype=np.float64)[keep].reshape(-1, 9)
            results["gt_labels"] = np.array([self.classes.index(n) for n in names], dtype=np.int64)
        return results

    def __getitem__(self, idx: int) -> dict:
        results = self.get_data_info(idx)
        for transform in self.pipeline:
            results = transform(results)
        return results


def _stack_nested(values: list):
    first = values[0]
    if isinstance(first, torch.Tensor):
        return torch.stack(values)
    if isinstance(first, dict):
        return {k: _stack_nested([v[k] for v in values]) for k in first}
    return list(values)


@FUNCTIONS.register_module(name="bev_collate")
def bev_collate(batch: list[dict]) -> dict:
    """Batch sample dicts: ``img`` (B, T, Ncam, 3, H, W) and the ``cams``/``ego`` tensors are stacked
    (images must share a padded size); ``meta`` becomes a list of dicts; per-sample variable-size ground
    truth (``gt_boxes``, ``gt_labels``, per-camera ``gt_boxes_2d``..., lanes, traffic elements, topology)
    become lists; occupancy grids are stacked."""
    shapes = {tuple(s["img"].shape) for s in batch}
    if len(shapes) > 1:
        raise ValueError(f"cannot batch images of different shapes {sorted(shapes)}; resize/pad to one size")
    out = dict(
        img=torch.stack([s["img"] for s in batch]),
        cams=_stack_nested([s["cams"] for s in batch]),
        ego=_stack_nested([s["ego"] for s in batch]),
        meta=[s["meta"] for s in batch],
    )
    for key in batch[0]:
        if key in out:
            continue
        values = [s[key] for s in batch]
        out[key] = torch.stack(values) if key.startswith("occ_") else values
    return out
