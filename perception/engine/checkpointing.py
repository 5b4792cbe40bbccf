"""Crash-safe training checkpoints and a ``--resume`` that survives a kill (docs/robustness.md,
"Crash-safe checkpoints").

mmengine's CheckpointHook writes ``iter_N.pth`` in place, deletes the oldest checkpoint *before*
writing the new one and writes ``last_checkpoint`` in place, so a kill during a save can leave no
complete checkpoint at all. Here:

* every checkpoint (and ``last_checkpoint``) is written to a temporary file in the same folder,
  flushed, fsynced and renamed into place (:func:`write_bytes_atomically`), so a file under a final
  name is always complete;
* ``last_checkpoint`` names a checkpoint only after its rename, and checkpoints beyond
  ``max_keep_ckpts`` (and a replaced best checkpoint) are removed only after the new one is complete;
* the random number generators of the process travel in the checkpoint, so a resumed run draws the
  augmentations the uninterrupted run would have drawn;
* :func:`select_resume_checkpoint` takes the newest intact checkpoint, skipping damaged ones
  (missing, empty, truncated, corrupt) and saying why.

:func:`use_crash_safe_checkpoints` puts :class:`CrashSafeCheckpointHook` in place of mmengine's
CheckpointHook in a config; ``tools/_runner_common.py`` ``load_config`` calls it for every tool.
"""

from __future__ import annotations

import os
import pickle
import random
import re
import sys
import time
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from mmengine.dist import get_world_size, is_main_process
from mmengine.fileio import LocalBackend, register_backend
from mmengine.hooks import CheckpointHook

from .registry import HOOKS

__all__ = ["ATOMIC_BACKEND", "PAUSE_WRITE_ENV", "CrashSafeCheckpointHook", "ResumeError", "checkpoint_damage",
           "remove_partial_files", "select_resume_checkpoint", "use_crash_safe_checkpoints",
           "write_bytes_atomically"]

ATOMIC_BACKEND = "perception_atomic_local"
# Test hook: "NAME:SECONDS" makes the write of the checkpoint file NAME stop after half of its bytes
# (flushed, so the partial file is visible) and sleep SECONDS, so a test can kill the process mid-write.
PAUSE_WRITE_ENV = "PERCEPTION_TEST_PAUSE_CHECKPOINT_WRITE"
PARTIAL_SUFFIX = ".partial"
LAST_CHECKPOINT = "last_checkpoint"
RNG_STATE_KEY = "rng_state"
_MMENGINE_NAMES = ("CheckpointHook", "mmengine.CheckpointHook")
# What loading a damaged or foreign file raises (besides backbones.checkpoint.CheckpointError, a ValueError).
_UNLOADABLE = (ValueError, RuntimeError, EOFError, OSError, pickle.UnpicklingError, AttributeError, ImportError,
               IndexError, KeyError)


class ResumeError(ValueError):
    """``--resume`` found checkpoints in a work dir but none it can resume from; names the work dir and
    each checkpoint's problem."""


# ---------------------------------------------------------------------------------------------------
# Writing


def write_bytes_atomically(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` so that ``path`` is either its old content or all of ``data``.

    The bytes go to ``.<name>.<pid>.partial`` in the same folder (a rename across file systems is not
    atomic), are flushed and fsynced, and the file is renamed over ``path``; the folder is fsynced so
    the rename itself survives a power loss. A failed write removes its partial file; a killed one
    leaves it, which :func:`remove_partial_files` cleans and resume ignores.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{os.getpid()}{PARTIAL_SUFFIX}")
    try:
        with open(partial, "wb") as f:
            _write_with_test_pause(f, data, path.name)
            f.flush()
            os.fsync(f.fileno())
        os.replace(partial, path)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    _fsync_folder(path.parent)
    return path


def _write_with_test_pause(f, data: bytes, name: str) -> None:
    pause = os.environ.get(PAUSE_WRITE_ENV, "")
    target, _, seconds = pause.rpartition(":")
    if not pause or target != name:
        f.write(data)
        return
    half = len(data) // 2
    f.write(data[:half])
    f.flush()
    print(f"[{PAUSE_WRITE_ENV}] wrote {half} of {len(data)} bytes of {name}; pausing {seconds} s",
          file=sys.stderr, flush=True)
    time.sleep(float(seconds))
    f.write(data[half:])


def _fsync_folder(folder: Path) -> None:
    if os.name != "posix":  # folders cannot be opened for fsync on Windows; its renames are journaled
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def remove_partial_files(folder: str | Path) -> list[Path]:
    """Remove the temporary files that killed writes left in ``folder``; return them."""
    partials = sorted(Path(folder).glob(f".*{PARTIAL_SUFFIX}"))
    for partial in partials:
        partial.unlink(missing_ok=True)
    return partials


class AtomicLocalBackend(LocalBackend):
    """mmengine's local file backend, writing through :func:`write_bytes_atomically`."""

    def put(self, obj: bytes, filepath: str | Path) -> None:
        write_bytes_atomically(filepath, obj)

    def put_text(self, obj: str, filepath: str | Path, encoding: str = "utf-8") -> None:
        write_bytes_atomically(filepath, obj.encode(encoding))


register_backend(ATOMIC_BACKEND, AtomicLocalBackend, force=True)


# ---------------------------------------------------------------------------------------------------
# The hook


@HOOKS.register_module()
class CrashSafeCheckpointHook(CheckpointHook):
    """mmengine's CheckpointHook (same arguments, file names and ``save_best``) with crash-safe saves.

    Saves go through :class:`AtomicLocalBackend`; ``last_checkpoint`` is written atomically after the
    checkpoint's rename; outdated checkpoints and a replaced best checkpoint are removed only after
    the new file is complete. With ``backend_args`` or ``file_client_args`` (remote storage) the
    writes are the backend's own and a warning says they are not crash-safe.
    """

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.crash_safe = self.backend_args is None and self.file_client_args is None
        if self.crash_safe:
            self.backend_args = {"backend": ATOMIC_BACKEND}
        self._saved_rng: dict | None = None
        self._saved_iter: int | None = None

    def before_train(self, runner) -> None:
        super().before_train(runner)
        if not self.crash_safe:
            runner.logger.warning("CrashSafeCheckpointHook: backend_args/file_client_args are set, so checkpoints "
                                  "are written by that backend and are not crash-safe")
        elif is_main_process():
            for partial in remove_partial_files(self.out_dir):
                runner.logger.info(f"removed {partial}, left by a write that did not finish")
        self._restore_rng_on_resume(runner)

    # mmengine calls this for every periodic save (and again after a new best checkpoint).
    def _save_checkpoint_with_step(self, runner, step: int, meta: dict) -> None:
        outdated = self._keep(runner, step)
        filename = self.filename_tmpl.format(step)
        self.last_ckpt = self.file_backend.join_path(self.out_dir, filename)
        runner.message_hub.update_info("last_ckpt", self.last_ckpt)
        runner.save_checkpoint(self.out_dir, filename, self.file_client_args, save_optimizer=self.save_optimizer,
                               save_param_scheduler=self.save_param_scheduler, meta=meta, by_epoch=self.by_epoch,
                               backend_args=self.backend_args, **self.args)
        if not is_main_process():  # rank 0 writes (FSDP's ranks all take part in gathering the state)
            return
        self._write_last_checkpoint(runner)
        for old_step in outdated:
            self._remove(self.file_backend.join_path(self.out_dir, self.filename_tmpl.format(old_step)))

    def _keep(self, runner, step: int) -> list[int]:
        """Record ``step`` among the kept checkpoints (saved in the message hub, so in the checkpoint);
        return the steps that fall out, to be removed once the new checkpoint is complete."""
        if self.max_keep_ckpts <= 0 or (self.keep_ckpt_ids and self.keep_ckpt_ids[-1] == step):
            return []
        kept = [*self.keep_ckpt_ids, step]
        outdated = kept[:-self.max_keep_ckpts]
        self.keep_ckpt_ids.clear()
        self.keep_ckpt_ids.extend(kept[-self.max_keep_ckpts:])
        runner.message_hub.update_info("keep_ckpt_ids", list(self.keep_ckpt_ids))
        return outdated

    def _write_last_checkpoint(self, runner) -> None:
        path = os.path.join(runner.work_dir, LAST_CHECKPOINT)
        if self.crash_safe:
            write_bytes_atomically(path, str(self.last_ckpt).encode())
        else:
            Path(path).write_text(str(self.last_ckpt))

    def _remove(self, path: str) -> None:
        if self.file_backend.isfile(path):
            self.file_backend.remove(path)
        elif self.file_backend.isdir(path):  # deepspeed saves folders
            self.file_backend.rmtree(path)

    def _save_best_checkpoint(self, runner, metrics: dict) -> None:
        """mmengine's best-checkpoint logic, with the previous best removed after the new one is written
        (mmengine removes it first): the old paths are hidden from it during the call, then compared."""
        if not self.save_best:
            return
        single = len(self.key_indicators) == 1  # 'auto' is renamed to the metric inside the call
        old = {0: self.best_ckpt_path} if single else dict(self.best_ckpt_path_dict)
        if single:
            self.best_ckpt_path = None
        else:
            self.best_ckpt_path_dict = dict.fromkeys(old)
        try:
            super()._save_best_checkpoint(runner, metrics)
        finally:
            new = {0: self.best_ckpt_path} if single else dict(self.best_ckpt_path_dict)
            kept = {key: new.get(key) or old[key] for key in old}  # None: not improved, the old best stays
            if single:
                self.best_ckpt_path = kept[0]
            else:
                self.best_ckpt_path_dict = kept
        for key, old_path in old.items():
            if old_path and kept[key] != old_path and is_main_process():
                self._remove(old_path)
                runner.logger.info(f"The previous best checkpoint {old_path} is removed")

    # Random number generators: mmengine reseeds on resume, so the augmentations after a resume would
    # differ from those of the uninterrupted run.
    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        checkpoint[RNG_STATE_KEY] = _rng_state()

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        self._saved_rng = checkpoint.get(RNG_STATE_KEY)
        self._saved_iter = checkpoint.get("meta", {}).get("iter")

    def _restore_rng_on_resume(self, runner) -> None:
        """Restore the generators saved with a checkpoint we resumed from (``load_from`` alone leaves the
        loop at iteration 0 and keeps the fresh seed), as the last step before training continues."""
        if self._saved_rng is None or self._saved_iter != runner.iter or runner.iter == 0:
            return
        if get_world_size() > 1:  # rank 0's state would replace the other ranks' own: keep mmengine's reseed
            runner.logger.info("resumed a distributed run: random generators reseeded, not restored")
            return
        _set_rng_state(self._saved_rng)
        runner.logger.info(f"restored the random generators saved at iteration {runner.iter}")


def _rng_state() -> dict[str, Any]:
    """The process's generators in types that ``torch.load(weights_only=True)`` reads (tensors, tuples,
    numbers, strings)."""
    name, keys, position, has_gauss, gauss = np.random.get_state(legacy=True)
    state = {"python": random.getstate(), "torch": torch.get_rng_state(),
             "numpy": (name, torch.from_numpy(keys.astype(np.int64)), int(position), int(has_gauss), float(gauss))}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    version, internal, gauss_next = state["python"]
    random.setstate((version, tuple(internal), gauss_next))
    torch.set_rng_state(state["torch"])
    name, keys, position, has_gauss, gauss = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), position, has_gauss, gauss))
    if "cuda" in state and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])


def use_crash_safe_checkpoints(cfg) -> None:
    """Make ``cfg``'s checkpoint hook a :class:`CrashSafeCheckpointHook`.

    mmengine's ``CheckpointHook`` (by name or class), a checkpoint entry without a type, and a config
    with no checkpoint entry (mmengine would add ``CheckpointHook(interval=1)``) all get it, with the
    same arguments. ``checkpoint=None`` (no checkpoints) and other hook types are left alone.
    """
    hooks = cfg.get("default_hooks") or {}
    if "checkpoint" in hooks and hooks["checkpoint"] is None:
        return
    spec = dict(hooks.get("checkpoint") or {"interval": 1})
    kind = spec.get("type", "CheckpointHook")
    if kind in _MMENGINE_NAMES or kind is CheckpointHook:
        spec["type"] = "perception.CrashSafeCheckpointHook"  # found whatever the default scope
    cfg.default_hooks = {**hooks, "checkpoint": spec}


# ---------------------------------------------------------------------------------------------------
# Resuming


def checkpoint_damage(path: str | Path) -> str | None:
    """What makes ``path`` an incomplete or damaged checkpoint file, or None when it is intact.

    Cheap checks, no unpickling: missing, empty, no zip central directory (torch's format; a file cut
    short loses it), a member failing its CRC (bytes changed after writing).
    """
    path = Path(path)
    if not path.exists():
        return "missing"
    if not path.is_file():
        return "not a file"
    size = path.stat().st_size
    if size == 0:
        return "empty (0 bytes)"
    if not zipfile.is_zipfile(path):
        return f"truncated or not a torch checkpoint ({size} bytes, no zip central directory)"
    try:
        with zipfile.ZipFile(path) as archive:
            bad_member = archive.testzip()
    except (zipfile.BadZipFile, OSError, EOFError, ValueError, RuntimeError) as err:
        return f"corrupt zip archive ({err})"
    if bad_member is not None:
        return f"corrupt ({bad_member} fails its CRC check)"
    return None


def _load_problem(path: Path, trusted: bool) -> str | None:
    """Why the safe loader cannot read an intact file as a training checkpoint, or None."""
    from backbones.checkpoint import load_checkpoint_file

    try:
        checkpoint = load_checkpoint_file(path, trusted=trusted)
    except _UNLOADABLE as err:
        return getattr(err, "problem", None) or f"{type(err).__name__}: {err}"
    if not isinstance(checkpoint, dict) or not {"meta", "state_dict"} <= checkpoint.keys():
        return "not a training checkpoint (no 'meta' and 'state_dict' entries)"
    return None


def _filename_template(cfg) -> str:
    spec = (cfg.get("default_hooks") or {}).get("checkpoint") or {}
    return spec.get("filename_tmpl") or ("epoch_{}.pth" if spec.get("by_epoch", True) else "iter_{}.pth")


def _checkpoint_folders(cfg, last_target: Path | None) -> list[Path]:
    work_dir = Path(cfg.work_dir)
    folders = [work_dir]
    out_dir = ((cfg.get("default_hooks") or {}).get("checkpoint") or {}).get("out_dir")
    if out_dir:  # the hook saves to out_dir/<work dir's name>
        folders.append(Path(out_dir) / work_dir.name)
    if last_target is not None:
        folders.append(last_target.parent)
    return list(dict.fromkeys(folders))


def _last_checkpoint_target(last_file: Path) -> Path | None:
    """The path ``last_checkpoint`` names; None when it is absent, empty or garbled (an in-place write by
    mmengine's own hook that was cut short)."""
    try:
        target = last_file.read_text().strip()
    except (OSError, UnicodeDecodeError):
        return None
    return Path(target) if target and "\n" not in target and "\0" not in target else None


def _candidates(cfg) -> tuple[list[Path], list[Path]]:
    """The checkpoints ``--resume`` may take, newest first, and the partial files of killed writes.

    Newest is the highest step in the hook's file-name template; ``last_checkpoint``'s target is
    among them even when it is missing (so its loss is reported) or named otherwise (then first).
    """
    last_target = _last_checkpoint_target(Path(cfg.work_dir) / LAST_CHECKPOINT)
    template = _filename_template(cfg)
    pattern = re.compile(re.escape(template).replace(re.escape("{}"), r"(\d+)") + r"\Z")
    steps: dict[Path, float] = {}
    partials: list[Path] = []
    for folder in _checkpoint_folders(cfg, last_target):
        if not folder.is_dir():
            continue
        partials += sorted(folder.glob(f".*{PARTIAL_SUFFIX}"))
        for path in folder.iterdir():
            match = pattern.match(path.name)
            if match:
                steps[path] = int(match.group(1))
    if last_target is not None and last_target not in steps:
        match = pattern.match(last_target.name)
        steps[last_target] = int(match.group(1)) if match else float("inf")
    return sorted(steps, key=lambda p: (steps[p], str(p)), reverse=True), partials


def select_resume_checkpoint(cfg, requested: str, *, trusted: bool = False,
                             report: Callable[[str], None] = print) -> str | None:
    """The checkpoint ``--resume`` continues from.

    ``requested`` is a path, or ``"auto"``: the newest intact checkpoint of ``cfg.work_dir``; damaged
    ones (:func:`checkpoint_damage`) and partial files of killed writes are skipped, and ``report``
    says which one was taken and why the others were skipped. None when the work dir holds no
    checkpoint (a first run starts from the beginning). An intact checkpoint the safe loader refuses
    (``trusted`` is ``--trust-checkpoint``) stops the search: an older one would silently lose work.

    Raises :class:`backbones.checkpoint.CheckpointError` for an unusable explicit path and
    :class:`ResumeError` when no checkpoint of the work dir can be resumed.
    """
    from backbones.checkpoint import CheckpointError

    if "://" in requested:  # a URL (mmengine downloads it): nothing local to check
        return requested
    if requested != "auto":
        problem = checkpoint_damage(requested) or _load_problem(Path(requested), trusted)
        if problem:
            raise CheckpointError(requested, f"cannot resume from it: {problem}")
        return requested
    candidates, partials = _candidates(cfg)
    skipped = [f"{p.name} (left over by a write that did not finish)" for p in partials]
    if not candidates:
        report(f"--resume: no checkpoint in {cfg.work_dir}; training starts from the beginning"
               + (f" (ignored {', '.join(skipped)})" if skipped else ""))
        return None
    for path in candidates:
        damage = checkpoint_damage(path)
        if damage:
            skipped.append(f"{path.name} ({damage})")
            continue
        problem = _load_problem(path, trusted)
        if problem:
            raise CheckpointError(path, f"cannot resume from it: {problem}")
        report(f"--resume: resuming from {path}" + (f"; skipped {', '.join(skipped)}" if skipped else ""))
        return str(path)
    raise ResumeError(f"--resume: no checkpoint in work dir {cfg.work_dir} can be resumed: {', '.join(skipped)}")
