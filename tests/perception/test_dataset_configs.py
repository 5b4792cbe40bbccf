"""The dataset base configs build a working loader and metric on the synthetic world."""

from __future__ import annotations

from pathlib import Path

import pytest
from mmengine.config import Config

CONFIGS = Path(__file__).parents[2] / "configs" / "_base_" / "datasets"


@pytest.mark.parametrize("name", ["nuscenes_bev.py", "synthetic_bev.py"])
def test_config_builds_loader_on_synthetic_world(name, synthetic_world):
    from mmengine.runner import Runner

    import perception.data  # noqa: F401  (registers the dataset, transforms and bev_collate)
    import perception.evaluation.nuscenes  # noqa: F401  (registers the metric; the tools register both)
    from perception.engine.registry import METRICS

    cfg = Config.fromfile(CONFIGS / name)
    root = str(synthetic_world.root) + "/"
    for split, infos in (("train", synthetic_world.train_infos), ("val", synthetic_world.val_infos)):
        loader_cfg = cfg[f"{split}_dataloader"]
        loader_cfg.update(num_workers=0, persistent_workers=False, batch_size=2)
        loader_cfg.dataset.update(ann_file=str(infos), data_root=root)
        if name == "nuscenes_bev.py":  # nuScenes resolution would upsample the small world: use its own
            for t in loader_cfg.dataset.pipeline:
                if t["type"] == "ResizeCropFlipImage":
                    t["final_size"] = synthetic_world.image_size
        loader_cfg.dataset["_scope_"] = "perception"
        batch = next(iter(Runner.build_dataloader(loader_cfg)))
        assert batch["img"].shape[:3] == (2, 1, 6) and len(batch["meta"]) == 2
    metric_cfg = dict(cfg.val_evaluator, ann_file=str(synthetic_world.val_infos), data_root=root)
    metric = METRICS.build(metric_cfg)
    assert metric.version in ("v1.0-trainval", "v1.0-mini")
