"""Shared set-up of tools/train.py, tools/test.py and tools/demo.py (not a public module)."""

from __future__ import annotations

import importlib
import importlib.util
import warnings

from mmengine.config import Config, DictAction

__all__ = ["TRUST_CHECKPOINT_HELP", "DictAction", "allow_runner_checkpoints", "load_config", "register_all"]

# Packages whose import registers modules into the project's registries (perception scope).
REGISTERING_MODULES = (
    "perception.models",
    "perception.data",
    "perception.data.classification",
    "perception.evaluation",
    "perception.evaluation.classification",
    "perception.evaluation.nuscenes",
    "perception.evaluation.occupancy",
    "perception.models.segmentation",
    "perception.data.segmentation",
    "perception.evaluation.segmentation",
    "bev",
    "occupancy",
    "lane_topology",
)


def allow_runner_checkpoints(trusted: bool = False) -> None:
    """Make mmengine read local checkpoints (``load_from``, ``--resume``, the tools/test.py checkpoint,
    a backbone's ``pretrained``) through :func:`backbones.checkpoint.load_checkpoint_file`.

    That loads with ``weights_only=True`` and the allow-list of harmless types that mmengine's own
    checkpoints need (its message hub: ``HistoryBuffer``, numpy arrays), so torch >= 2.6 reads them
    without unpickling in full; damaged files get a ``CheckpointError`` naming the file. ``trusted``
    (the tools' ``--trust-checkpoint``) allows full unpickling for every checkpoint of this run.
    """
    from mmengine.runner.checkpoint import CheckpointLoader

    from backbones.checkpoint import load_checkpoint_file, trust_all_checkpoints

    trust_all_checkpoints(trusted)

    @CheckpointLoader.register_scheme(prefixes="", force=True)
    def load_from_local(filename: str, map_location=None):
        return load_checkpoint_file(filename, trusted=trusted, map_location=map_location)


TRUST_CHECKPOINT_HELP = ("the checkpoint files of this run are trusted: unpickle them in full if they hold "
                         "Python types outside the allow-list (docs/backbones.md, 'Loading checkpoints'); "
                         "full unpickling can run any code a file contains")


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
    over ``work_dirs/<config name>``. The checkpoint hook is made crash-safe (docs/robustness.md).
    """
    from pathlib import Path

    from perception.engine.checkpointing import use_crash_safe_checkpoints

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
    use_crash_safe_checkpoints(cfg)
    return cfg
