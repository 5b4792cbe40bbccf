"""Shared set-up of tools/train.py, tools/test.py and tools/demo.py (not a public module)."""

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
    "perception.evaluation.nuscenes",
    "perception.evaluation.occupancy",
    "bev",
    "occupancy",
    "lane_topology",
)


def allow_runner_checkpoints() -> None:
    """Let mmengine read its own checkpoints under torch >= 2.6.

    mmengine 0.10.7 saves its message hub (``HistoryBuffer``, numpy arrays) in every checkpoint and
    reads them with ``torch.load``'s new ``weights_only=True`` default, which refuses them, so
    ``--resume`` and ``tools/test.py`` would fail. Files given to these tools (``load_from``,
    ``--resume``, the test checkpoint) are the user's own, so they are unpickled in full.
    """
    import torch
    from mmengine.runner.checkpoint import CheckpointLoader

    @CheckpointLoader.register_scheme(prefixes="", force=True)
    def load_from_local(filename: str, map_location=None):
        from pathlib import Path

        if not Path(filename).is_file():
            raise FileNotFoundError(f"checkpoint file not found: {filename}")
        return torch.load(filename, map_location=map_location, weights_only=False)


def register_all() -> None:
    """Register the lower layers (ops, backbones) and import every package that registers modules."""
    import perception.engine

    allow_runner_checkpoints()

    perception.engine.register_lower_layers()
    for name in REGISTERING_MODULES:
        if importlib.util.find_spec(name) is None:
            continue
        try:
            importlib.import_module(name)
        except ImportError as err:  # a package under development must not block unrelated tasks
            warnings.warn(f"could not import {name} ({err}); its modules are not registered", stacklevel=2)


def load_config(path: str, cfg_options: dict | None = None, work_dir: str | None = None,
                launcher: str | None = None, *, seed: int | None = None) -> Config:
    """The config at ``path`` as the tools run it.

    ``cfg_options`` (``--cfg-options``) are merged in; ``launcher`` is set when given (the Runner's
    default is ``"none"``); ``seed`` sets ``randomness.seed`` (keeping the config's other randomness
    entries); the scope defaults to ``perception``; ``work_dir`` wins over the config's, which wins
    over ``work_dirs/<config name>``.
    """
    from pathlib import Path

    cfg = Config.fromfile(path)
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    if launcher is not None:
        cfg.launcher = launcher
    cfg.setdefault("default_scope", "perception")
    if seed is not None:
        cfg.randomness = {**cfg.get("randomness", {}), "seed": seed}
    if work_dir is not None:
        cfg.work_dir = work_dir
    elif cfg.get("work_dir") is None:
        cfg.work_dir = str(Path("work_dirs") / Path(path).stem)
    return cfg
