"""Shared set-up of tools/train.py and tools/test.py (not a public module)."""

from __future__ import annotations

import importlib
import importlib.util
import warnings

from mmengine.config import Config, DictAction

__all__ = ["DictAction", "load_config", "register_all"]

# Packages whose import registers modules into the project's registries (perception scope).
REGISTERING_MODULES = (
    "perception.models",
    "perception.data",
    "perception.data.classification",
    "perception.evaluation",
    "perception.evaluation.classification",
    "bev",
    "occupancy",
    "lane_topology",
)


def register_all() -> None:
    """Register the lower layers (ops, backbones) and import every package that registers modules."""
    import perception.engine

    perception.engine.register_lower_layers()
    for name in REGISTERING_MODULES:
        if importlib.util.find_spec(name) is None:
            continue
        try:
            importlib.import_module(name)
        except ImportError as err:  # a package under development must not block unrelated tasks
            warnings.warn(f"could not import {name} ({err}); its modules are not registered", stacklevel=2)


def load_config(path: str, cfg_options: dict | None, work_dir: str | None, launcher: str) -> Config:
    from pathlib import Path

    cfg = Config.fromfile(path)
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    cfg.launcher = launcher
    cfg.setdefault("default_scope", "perception")
    if work_dir is not None:
        cfg.work_dir = work_dir
    elif cfg.get("work_dir") is None:
        cfg.work_dir = str(Path("work_dirs") / Path(path).stem)
    return cfg
