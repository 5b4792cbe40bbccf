"""Crash-safe checkpoints (perception/engine/checkpointing.py, docs/robustness.md): atomic writes, the
hook's order of write / last_checkpoint / removal with an mmengine Runner, the choice ``--resume``
makes among damaged files, and (slow) tools/train.py killed with SIGKILL mid-write and between
checkpoints, then resumed, ending with the weights of an uninterrupted run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from mmengine.config import Config
from mmengine.evaluator import BaseMetric
from mmengine.model import BaseModel
from mmengine.runner import Runner
from torch import nn
from torch.utils.data import Dataset

from backbones.checkpoint import CheckpointError, load_checkpoint_file
from perception.engine import (
    HOOKS,
    CrashSafeCheckpointHook,
    ResumeError,
    checkpoint_damage,
    checkpointing,
    select_resume_checkpoint,
    use_crash_safe_checkpoints,
    write_bytes_atomically,
)
from tests.tool_loader import import_helper

REPO = Path(__file__).resolve().parents[2]


# ---------------------------------------------------------------------------------------------------
# Files


def _training_checkpoint(path: Path, iteration: int) -> Path:
    """A small file with the layout of an mmengine training checkpoint."""
    torch.save({"meta": {"iter": iteration, "epoch": 0}, "state_dict": {"w": torch.full((64,), float(iteration))}},
               path)
    return path


def _truncate(path: Path) -> Path:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def test_atomic_write_replaces_the_whole_file_and_leaves_no_partial(tmp_path):
    target = tmp_path / "sub" / "file.bin"
    write_bytes_atomically(target, b"old")
    write_bytes_atomically(target, b"new content")
    assert target.read_bytes() == b"new content"
    assert sorted(p.name for p in target.parent.iterdir()) == ["file.bin"]


def test_a_failed_write_keeps_the_old_file_and_removes_its_partial(tmp_path, monkeypatch):
    target = write_bytes_atomically(tmp_path / "file.bin", b"old")

    def disk_full(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(checkpointing.os, "fsync", disk_full)
    with pytest.raises(OSError, match="No space"):
        write_bytes_atomically(target, b"new")
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["file.bin"]


def test_damage_is_classified_without_unpickling(tmp_path):
    intact = _training_checkpoint(tmp_path / "intact.pth", 1)
    assert checkpoint_damage(intact) is None
    assert checkpoint_damage(tmp_path / "absent.pth") == "missing"
    (tmp_path / "empty.pth").write_bytes(b"")
    assert checkpoint_damage(tmp_path / "empty.pth") == "empty (0 bytes)"
    truncated = _truncate(_training_checkpoint(tmp_path / "truncated.pth", 1))
    assert "truncated" in checkpoint_damage(truncated)
    (tmp_path / "random.pth").write_bytes(os.urandom(4096))
    assert "no zip central directory" in checkpoint_damage(tmp_path / "random.pth")
    flipped = bytearray(intact.read_bytes())
    flipped[len(flipped) // 2] ^= 0xFF  # inside the tensor's bytes: the archive is whole, its CRC is not
    (tmp_path / "flipped.pth").write_bytes(bytes(flipped))
    assert "fails its CRC check" in checkpoint_damage(tmp_path / "flipped.pth")


# ---------------------------------------------------------------------------------------------------
# --resume's choice


def _work_dir(tmp_path: Path, last: str | None) -> tuple[Config, Path]:
    work_dir = tmp_path / "work"
    work_dir.mkdir()
    if last is not None:
        (work_dir / "last_checkpoint").write_text(str(work_dir / last))
    cfg = Config(dict(work_dir=str(work_dir), default_hooks=dict(checkpoint=dict(by_epoch=False, interval=1))))
    return cfg, work_dir


def test_the_issue_16_work_dir_fails_with_one_error_naming_the_work_dir(tmp_path):
    # max_keep_ckpts=1 and mmengine's order: iter_6.pth deleted, iter_7.pth half written, last_checkpoint -> iter_6.
    cfg, work_dir = _work_dir(tmp_path, "iter_6.pth")
    _truncate(_training_checkpoint(work_dir / "iter_7.pth", 7))
    with pytest.raises(ResumeError) as error:
        select_resume_checkpoint(cfg, "auto", report=print)
    message = str(error.value)
    assert isinstance(error.value, ValueError) and "\n" not in message
    assert str(work_dir) in message
    assert "iter_7.pth (truncated" in message and "iter_6.pth (missing)" in message


def test_resume_takes_the_newest_intact_checkpoint_and_says_what_it_skipped(tmp_path):
    cfg, work_dir = _work_dir(tmp_path, "iter_6.pth")
    _training_checkpoint(work_dir / "iter_4.pth", 4)
    _truncate(_training_checkpoint(work_dir / "iter_6.pth", 6))
    (work_dir / "iter_7.pth").write_bytes(b"")
    (work_dir / ".iter_8.pth.123.partial").write_bytes(b"PK\x03\x04")
    _training_checkpoint(work_dir / "best_loss_iter_9.pth", 9)  # not in the template: never resumed from
    lines = []
    assert select_resume_checkpoint(cfg, "auto", report=lines.append) == str(work_dir / "iter_4.pth")
    assert len(lines) == 1
    assert f"resuming from {work_dir / 'iter_4.pth'}" in lines[0]
    for skipped in (".iter_8.pth.123.partial (left over", "iter_7.pth (empty", "iter_6.pth (truncated"):
        assert skipped in lines[0]


def test_a_checkpoint_renamed_before_last_checkpoint_was_updated_is_taken(tmp_path):
    cfg, work_dir = _work_dir(tmp_path, "iter_6.pth")
    _training_checkpoint(work_dir / "iter_6.pth", 6)
    _training_checkpoint(work_dir / "iter_12.pth", 12)  # steps compare as numbers, not as text
    assert select_resume_checkpoint(cfg, "auto", report=lambda line: None) == str(work_dir / "iter_12.pth")


def test_a_garbled_last_checkpoint_file_is_ignored(tmp_path):
    cfg, work_dir = _work_dir(tmp_path, None)
    (work_dir / "last_checkpoint").write_bytes(b"\xff\xfe\x00/work/ite")  # an in-place write cut short
    _training_checkpoint(work_dir / "iter_3.pth", 3)
    assert select_resume_checkpoint(cfg, "auto", report=lambda line: None) == str(work_dir / "iter_3.pth")


def test_a_work_dir_without_checkpoints_starts_from_the_beginning(tmp_path):
    cfg, _ = _work_dir(tmp_path, None)
    lines = []
    assert select_resume_checkpoint(cfg, "auto", report=lines.append) is None
    assert "training starts from the beginning" in lines[0]


def test_an_explicit_damaged_checkpoint_is_an_error_naming_it(tmp_path):
    cfg, work_dir = _work_dir(tmp_path, None)
    good = _training_checkpoint(work_dir / "iter_2.pth", 2)
    assert select_resume_checkpoint(cfg, str(good)) == str(good)
    bad = _truncate(_training_checkpoint(work_dir / "iter_3.pth", 3))
    with pytest.raises(CheckpointError, match=f"{bad}: cannot resume from it: truncated"):
        select_resume_checkpoint(cfg, str(bad))
    with pytest.raises(CheckpointError, match="missing"):
        select_resume_checkpoint(cfg, str(work_dir / "nothing.pth"))


def test_an_intact_file_that_is_no_training_checkpoint_stops_the_search(tmp_path):
    # Falling back to an older checkpoint would silently lose the newer one's work.
    cfg, work_dir = _work_dir(tmp_path, None)
    _training_checkpoint(work_dir / "iter_2.pth", 2)
    torch.save({"weights": torch.zeros(3)}, work_dir / "iter_3.pth")
    with pytest.raises(CheckpointError, match="iter_3.pth: cannot resume from it: not a training checkpoint"):
        select_resume_checkpoint(cfg, "auto", report=print)


# ---------------------------------------------------------------------------------------------------
# The config


def test_every_way_of_asking_for_mmengines_hook_gets_the_crash_safe_one():
    from mmengine.hooks import CheckpointHook

    for spec in (dict(type="CheckpointHook", interval=3, max_keep_ckpts=1), dict(interval=3, max_keep_ckpts=1),
                 dict(type="mmengine.CheckpointHook", interval=3, max_keep_ckpts=1),
                 dict(type=CheckpointHook, interval=3, max_keep_ckpts=1)):
        cfg = Config(dict(default_hooks=dict(checkpoint=spec, logger=dict(type="LoggerHook"))))
        use_crash_safe_checkpoints(cfg)
        assert cfg.default_hooks.checkpoint == dict(type="perception.CrashSafeCheckpointHook", interval=3,
                                                    max_keep_ckpts=1)
        assert cfg.default_hooks.logger == dict(type="LoggerHook")
    cfg = Config(dict())
    use_crash_safe_checkpoints(cfg)  # mmengine's default: CheckpointHook(interval=1)
    assert cfg.default_hooks.checkpoint == dict(type="perception.CrashSafeCheckpointHook", interval=1)
    for kept in (None, dict(type="MyCheckpointHook", interval=2)):
        cfg = Config(dict(default_hooks=dict(checkpoint=kept)))
        use_crash_safe_checkpoints(cfg)
        assert cfg.default_hooks.checkpoint == kept
    hook = HOOKS.build(dict(type="perception.CrashSafeCheckpointHook", interval=2))
    assert isinstance(hook, CrashSafeCheckpointHook)


CONFIGS = sorted(p.relative_to(REPO).as_posix() for p in (REPO / "configs").rglob("*.py") if "_base_" not in p.parts)


@pytest.mark.parametrize("config", CONFIGS)
def test_the_tools_load_every_config_with_the_crash_safe_hook(config):
    cfg = import_helper("_runner_common").load_config(str(REPO / config))
    assert cfg.default_hooks.checkpoint.type == "perception.CrashSafeCheckpointHook"


def test_the_config_keeps_the_hooks_arguments():
    cfg = import_helper("_runner_common").load_config(str(REPO / "configs/bev/bevformer_v2_tiny_synthetic.py"))
    assert cfg.default_hooks.checkpoint == dict(type="perception.CrashSafeCheckpointHook", by_epoch=False,
                                                interval=200, max_keep_ckpts=1, save_last=True)


# ---------------------------------------------------------------------------------------------------
# The hook in an mmengine Runner


class _Points(Dataset):
    def __len__(self) -> int:
        return 8

    def __getitem__(self, index: int) -> dict:
        x = torch.tensor([float(index)])
        return {"inputs": x, "targets": 2 * x}


class _Line(BaseModel):
    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(1, 1)

    def forward(self, inputs, targets, mode="tensor"):
        loss = ((self.linear(inputs) - targets) ** 2).mean()
        return {"loss": loss} if mode == "loss" else [loss.detach()]


class _ScriptedScore(BaseMetric):
    """Reports the next of ``scores`` at each validation, whatever the model predicts."""

    def __init__(self, scores: list[float]) -> None:
        super().__init__()
        self.scores = list(scores)

    def process(self, data_batch, data_samples) -> None:
        self.results.append(0)

    def compute_metrics(self, results) -> dict:
        return {"score": self.scores.pop(0)}


def _runner(work_dir: Path, iters: int, checkpoint: dict, scores: list[float] | None = None) -> Runner:
    loader = dict(dataset=_Points(), sampler=dict(type="DefaultSampler", shuffle=False), batch_size=4,
                  collate_fn=dict(type="default_collate"))
    validation = {} if scores is None else dict(val_dataloader=loader, val_cfg=dict(),
                                                 val_evaluator=[_ScriptedScore(scores)])
    return Runner(model=_Line(), work_dir=str(work_dir), train_dataloader=loader,
                  optim_wrapper=dict(optimizer=dict(type="SGD", lr=0.01)),
                  train_cfg=dict(by_epoch=False, max_iters=iters, val_interval=1),
                  default_hooks=dict(checkpoint=dict(type="perception.CrashSafeCheckpointHook", by_epoch=False,
                                                     **checkpoint), logger=dict(type="LoggerHook", interval=100)),
                  default_scope="perception", experiment_name=f"crash_safe_{work_dir.parent.name}_{work_dir.name}",
                  **validation)


def _intact_checkpoints(folder: Path, prefix: str) -> list[str]:
    return sorted(p.name for p in folder.glob(f"{prefix}*.pth") if checkpoint_damage(p) is None)


class _FileEvents:
    """Checks, after every rename and removal the hook makes, that ``last_checkpoint`` names an intact
    checkpoint and that an intact checkpoint (and best checkpoint, once there is one) exists."""

    def __init__(self, work_dir: Path, monkeypatch) -> None:
        self.work_dir, self.events, self.best_seen = work_dir, [], False
        replace, remove = os.replace, checkpointing.AtomicLocalBackend.remove

        def checked_replace(source, target):
            replace(source, target)
            self.check(f"rename {Path(target).name}")

        def checked_remove(backend, path):
            remove(backend, path)
            self.check(f"remove {Path(path).name}")

        monkeypatch.setattr(checkpointing.os, "replace", checked_replace)
        monkeypatch.setattr(checkpointing.AtomicLocalBackend, "remove", checked_remove)

    def check(self, event: str) -> None:
        self.events.append(event)
        last = self.work_dir / "last_checkpoint"
        if last.exists():
            assert checkpoint_damage(last.read_text()) is None, f"after {event}: last_checkpoint names a bad file"
            assert _intact_checkpoints(self.work_dir, "iter_"), f"after {event}: no intact checkpoint"
        best = _intact_checkpoints(self.work_dir, "best_")
        self.best_seen = self.best_seen or bool(best)
        assert best or not self.best_seen, f"after {event}: the best checkpoint is gone"


def test_max_keep_one_never_leaves_zero_complete_checkpoints(tmp_path, monkeypatch):
    work_dir = tmp_path / "work"
    events = _FileEvents(work_dir, monkeypatch)
    _runner(work_dir, iters=4, checkpoint=dict(interval=1, max_keep_ckpts=1)).train()
    assert events.events[-3:] == ["rename iter_4.pth", "rename last_checkpoint", "remove iter_3.pth"]
    assert _intact_checkpoints(work_dir, "iter_") == ["iter_4.pth"]
    assert (work_dir / "last_checkpoint").read_text() == str(work_dir / "iter_4.pth")
    assert not list(work_dir.glob(".*"))


def test_a_save_that_fails_midway_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    work_dir = tmp_path / "work"
    write = checkpointing._write_with_test_pause

    def crash_on_iter_3(f, data, name):
        if name == "iter_3.pth":
            f.write(data[: len(data) // 2])
            raise OSError(5, "Input/output error")
        write(f, data, name)

    monkeypatch.setattr(checkpointing, "_write_with_test_pause", crash_on_iter_3)
    with pytest.raises(OSError, match="Input/output error"):
        _runner(work_dir, iters=4, checkpoint=dict(interval=1, max_keep_ckpts=1)).train()
    assert _intact_checkpoints(work_dir, "iter_") == ["iter_2.pth"]
    assert sorted(p.name for p in work_dir.glob("*.pth")) == ["iter_2.pth"]
    assert (work_dir / "last_checkpoint").read_text() == str(work_dir / "iter_2.pth")
    cfg = Config(dict(work_dir=str(work_dir), default_hooks=dict(checkpoint=dict(by_epoch=False))))
    assert select_resume_checkpoint(cfg, "auto", report=lambda line: None) == str(work_dir / "iter_2.pth")


def test_a_leftover_partial_file_is_removed_when_training_starts(tmp_path):
    work_dir = tmp_path / "work"
    work_dir.mkdir()
    leftover = work_dir / ".iter_9.pth.4242.partial"
    leftover.write_bytes(b"half")
    _runner(work_dir, iters=1, checkpoint=dict(interval=1)).train()
    assert not leftover.exists()
    assert _intact_checkpoints(work_dir, "iter_") == ["iter_1.pth"]


def test_save_best_keeps_one_best_checkpoint_and_writes_it_before_removing_the_old(tmp_path, monkeypatch):
    work_dir = tmp_path / "work"
    events = _FileEvents(work_dir, monkeypatch)
    runner = _runner(work_dir, iters=4, checkpoint=dict(interval=1, max_keep_ckpts=1, save_best="score",
                                                        rule="greater"), scores=[0.1, 0.3, 0.2, 0.5])
    runner.train()
    assert _intact_checkpoints(work_dir, "best_") == ["best_score_iter_4.pth"]
    assert not list(work_dir.glob("best_score_iter_[123].pth"))
    assert events.events.index("rename best_score_iter_2.pth") < events.events.index("remove best_score_iter_1.pth")
    assert runner.message_hub.get_info("best_score") == 0.5
    assert runner.message_hub.get_info("best_ckpt") == str(work_dir / "best_score_iter_4.pth")
    saved = load_checkpoint_file(work_dir / "iter_4.pth")
    assert saved["message_hub"]["runtime_info"]["best_ckpt"] == str(work_dir / "best_score_iter_4.pth")


# ---------------------------------------------------------------------------------------------------
# tools/train.py killed and resumed (slow: five training processes of a few seconds each)

SHAPES_CONFIG = REPO / "configs" / "classification" / "internimage_tiny_shapes.py"
EPOCHS = 4


def _train_command(work_dir: Path, shapes: Path, *extra: str) -> list[str]:
    options = [f"{loader}.dataset.data_root={shapes}" for loader in ("train_dataloader", "val_dataloader",
                                                                      "test_dataloader")]
    options += [f"train_cfg.max_epochs={EPOCHS}", "train_cfg.val_interval=100", "default_hooks.checkpoint.interval=1",
                "randomness.seed=0"]
    return [sys.executable, str(REPO / "tools" / "train.py"), str(SHAPES_CONFIG), "--work-dir", str(work_dir),
            *extra, "--cfg-options", *options]


def _env(**extra: str) -> dict[str, str]:
    return dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", CUDA_VISIBLE_DEVICES="", PYTHONUNBUFFERED="1",
                **extra)


def _run(command: list[str]) -> str:
    done = subprocess.run(command, cwd=REPO, env=_env(), capture_output=True, text=True, timeout=600)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-4000:]
    return output


def _kill_when(command: list[str], ready, env: dict[str, str], log: Path, timeout_s: float = 300) -> None:
    """Start ``command`` (its output to ``log``) and SIGKILL it as soon as ``ready(its pid)`` holds."""
    with open(log, "w") as output:
        process = subprocess.Popen(command, cwd=REPO, env=env, stdout=output, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout_s
        try:
            while not ready(process.pid):
                assert process.poll() is None, f"training ended before the kill:\n{log.read_text()[-4000:]}"
                assert time.monotonic() < deadline, "the moment to kill never came"
                time.sleep(0.02)
        finally:
            process.send_signal(signal.SIGKILL)
            process.wait(timeout=60)
    assert process.returncode == -signal.SIGKILL


def _last_checkpoint_is(work_dir: Path, *names: str):
    def ready(pid: int) -> bool:
        last = work_dir / "last_checkpoint"
        return last.exists() and last.read_text().endswith(names)
    return ready


def _paused_in_write_of(work_dir: Path, name: str, log: Path):
    def ready(pid: int) -> bool:  # the test hook has written half of this process's partial file and sleeps
        partial = work_dir / f".{name}.{pid}.partial"
        return partial.exists() and f"bytes of {name}; pausing" in log.read_text()
    return ready


def _load(path: Path) -> dict:
    return load_checkpoint_file(path)  # the safe loader: what the checkpoint holds (rng_state too) is allow-listed


@pytest.mark.slow
def test_training_killed_between_and_during_checkpoints_resumes_to_the_uninterrupted_result(tmp_path):
    shapes = tmp_path / "shapes"
    uninterrupted, killed = tmp_path / "uninterrupted", tmp_path / "killed"
    _run(_train_command(uninterrupted, shapes))

    # Killed between checkpoints: in epoch 2 after epoch_1.pth (or, on a slow machine, in epoch 3).
    _kill_when(_train_command(killed, shapes), _last_checkpoint_is(killed, "epoch_1.pth", "epoch_2.pth"), _env(),
               tmp_path / "first.log")
    assert checkpoint_damage((killed / "last_checkpoint").read_text()) is None

    # Resumed, then killed while epoch_3.pth is half written (max_keep_ckpts=1: the issue's situation).
    paused = _env(**{checkpointing.PAUSE_WRITE_ENV: "epoch_3.pth:120"})
    log = tmp_path / "second.log"
    _kill_when(_train_command(killed, shapes, "--resume"), _paused_in_write_of(killed, "epoch_3.pth", log), paused,
               log)
    assert (killed / "last_checkpoint").read_text() == str(killed / "epoch_2.pth")
    assert checkpoint_damage(killed / "epoch_2.pth") is None
    assert not (killed / "epoch_3.pth").exists()
    [partial] = killed.glob(".epoch_3.pth.*.partial")
    assert checkpoint_damage(partial) is not None

    # Resumed to the end: from epoch 2, so one checkpoint interval (epoch 3) is done again.
    output = _run(_train_command(killed, shapes, "--resume"))
    assert f"--resume: resuming from {killed / 'epoch_2.pth'}; skipped {partial.name} (left over" in output
    assert "resumed epoch: 2, iter: 30" in output
    assert not list(killed.glob(".*.partial"))
    assert sorted(p.name for p in killed.glob("*.pth")) == ["epoch_4.pth"]

    expected, resumed = _load(uninterrupted / "epoch_4.pth"), _load(killed / "epoch_4.pth")
    assert resumed["meta"]["iter"] == expected["meta"]["iter"] == EPOCHS * 15
    for part in ("state_dict", "ema_state_dict"):
        assert resumed[part].keys() == expected[part].keys()
        different = [k for k in expected[part] if not torch.equal(expected[part][k], resumed[part][k])]
        assert not different, f"{part}: {len(different)} tensors differ from the uninterrupted run: {different[:3]}"
    for state_a, state_b in zip(expected["optimizer"]["state"].values(), resumed["optimizer"]["state"].values(),
                                strict=True):
        assert all(torch.equal(state_a[k], state_b[k]) for k in state_a)
    assert expected["param_schedulers"] == resumed["param_schedulers"]
