"""Safe checkpoint loading (docs/backbones.md, "Loading checkpoints"): damaged files are classified
before any unpickling, unlisted types need the explicit opt-in, hostile pickles never run, the
official/mmengine/our own checkpoints load with the allow-list alone, and dtypes are checked."""

from __future__ import annotations

import builtins
import pathlib
import pickle
import sys
import types
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import backbones
from backbones.checkpoint import (
    CheckpointError,
    CheckpointMismatchError,
    CheckpointNeedsTrustError,
    load_checkpoint_file,
    load_pretrained,
    save_checkpoint,
)
from tests.pickled_objects import CustomPayload, ShellCommand


class PathTouch:
    """Reaches a method through ``getattr`` (pickled by qualified name) to create ``marker``."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return pathlib.Path.touch, (pathlib.Path(self.marker),)


class Printer:
    def __reduce__(self):
        return builtins.print, ("HOSTILE PICKLE RAN",)


@pytest.fixture
def full_unpickling_calls(monkeypatch) -> list[str]:
    """Every torch.load call with weights_only=False (full unpickling), by file name."""
    calls: list[str] = []
    real_load = torch.load

    def recording_load(f, *args, **kwargs):
        if kwargs.get("weights_only") is False:
            calls.append(str(f))
        return real_load(f, *args, **kwargs)

    monkeypatch.setattr(torch, "load", recording_load)
    return calls


def _weights() -> dict[str, torch.Tensor]:
    return {"layer.weight": torch.arange(6, dtype=torch.float32).reshape(2, 3), "layer.bias": torch.ones(2)}


def _truncated_zip(tmp_path: Path) -> Path:
    whole = tmp_path / "whole.pth"
    torch.save({"model": _weights()}, whole)
    data = whole.read_bytes()
    path = tmp_path / "truncated.pth"
    path.write_bytes(data[: len(data) // 2])
    return path


def _truncated_legacy(tmp_path: Path) -> Path:
    whole = tmp_path / "whole_legacy.pth"
    torch.save({"model": _weights()}, whole, _use_new_zipfile_serialization=False)
    path = tmp_path / "truncated_legacy.pth"
    path.write_bytes(whole.read_bytes()[:60])
    return path


def _empty(tmp_path: Path) -> Path:
    path = tmp_path / "empty.pth"
    path.write_bytes(b"")
    return path


def _random_bytes(tmp_path: Path) -> Path:
    path = tmp_path / "random.pth"
    path.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    return path


def _plain_pickle(tmp_path: Path) -> Path:
    path = tmp_path / "plain.pkl"
    path.write_bytes(pickle.dumps({"weights": [1.0, 2.0]}, protocol=2))
    return path


def _truncated_safetensors(tmp_path: Path) -> Path:
    whole = save_checkpoint(_weights(), tmp_path / "whole.safetensors")
    path = tmp_path / "truncated.safetensors"
    path.write_bytes(whole.read_bytes()[:-8])
    return path


UNREADABLE = {
    "truncated .pth": (_truncated_zip, "truncated or corrupt torch checkpoint"),
    "truncated legacy .pth": (_truncated_legacy, "truncated or corrupt legacy torch checkpoint"),
    "empty file": (_empty, "is empty"),
    "random bytes": (_random_bytes, "not a checkpoint"),
    "plain pickle": (_plain_pickle, "not a torch checkpoint: a plain Python pickle"),
    "truncated safetensors": (_truncated_safetensors, "truncated safetensors file"),
}


@pytest.mark.parametrize("trusted", [False, True])
@pytest.mark.parametrize("case", sorted(UNREADABLE))
def test_unreadable_files_are_refused_before_any_unpickling(tmp_path, full_unpickling_calls, case: str,
                                                            trusted: bool) -> None:
    make, problem = UNREADABLE[case]
    path = make(tmp_path)
    with pytest.raises(CheckpointError) as err:
        load_checkpoint_file(path, trusted=trusted)
    assert str(err.value).startswith(f"{path}: ")
    assert problem in str(err.value)
    assert not isinstance(err.value, CheckpointNeedsTrustError)
    assert full_unpickling_calls == []  # not even with the opt-in


def test_missing_file_is_a_checkpoint_error_and_a_file_not_found_error(tmp_path) -> None:
    path = tmp_path / "nowhere.pth"
    with pytest.raises(CheckpointError, match="nowhere.pth: checkpoint file does not exist") as err:
        load_checkpoint_file(path)
    assert isinstance(err.value, FileNotFoundError)


@pytest.mark.parametrize("legacy", [False, True])
def test_custom_class_needs_the_opt_in(tmp_path, full_unpickling_calls, legacy: bool) -> None:
    path = tmp_path / "custom.pth"
    torch.save({"model": _weights(), "extra": CustomPayload(7)}, path, _use_new_zipfile_serialization=not legacy)
    with pytest.raises(CheckpointNeedsTrustError) as err:
        load_checkpoint_file(path)
    message = str(err.value)
    assert message.startswith(f"{path}: needs full unpickling")
    assert f"{CustomPayload.__module__}.CustomPayload" in message
    assert "trusted=True" in message and "--trust-checkpoint" in message
    assert full_unpickling_calls == []

    loaded = load_checkpoint_file(path, trusted=True)
    assert loaded["extra"].value == 7
    assert torch.equal(loaded["model"]["layer.weight"], _weights()["layer.weight"])
    assert full_unpickling_calls == [str(path)]


@pytest.mark.parametrize("payload", ["shell", "path_touch", "print"])
def test_hostile_pickles_are_not_executed(tmp_path, capsys, full_unpickling_calls, payload: str) -> None:
    marker = tmp_path / "marker"
    hostile = {"shell": ShellCommand(marker), "path_touch": PathTouch(marker), "print": Printer()}[payload]
    path = tmp_path / "hostile.pth"
    torch.save({"model": _weights(), "extra": hostile}, path)
    for load in (lambda: load_checkpoint_file(path),
                 lambda: load_pretrained(nn.Linear(3, 2), path, prefix="layer.")):
        with pytest.raises(CheckpointNeedsTrustError, match=f"^{path}: needs full unpickling"):
            load()
    assert not marker.exists()
    assert "HOSTILE PICKLE RAN" not in capsys.readouterr().out
    assert full_unpickling_calls == []


def test_getattr_is_limited_to_history_buffer_statistics(tmp_path, full_unpickling_calls) -> None:
    from mmengine.logging import HistoryBuffer

    class FetchInit:
        def __reduce__(self):
            return getattr, (HistoryBuffer, "__init__")

    path = tmp_path / "getattr.pth"
    torch.save({"x": FetchInit()}, path)
    with pytest.raises(CheckpointNeedsTrustError, match="getattr"):
        load_checkpoint_file(path)
    assert full_unpickling_calls == []


def test_allow_list_is_scoped_to_the_load(tmp_path) -> None:
    from mmengine.logging import HistoryBuffer

    path = tmp_path / "hub.pth"
    torch.save({"buffer": HistoryBuffer([1.0], [1])}, path)
    load_checkpoint_file(path)
    assert HistoryBuffer not in torch.serialization.get_safe_globals()
    with pytest.raises(pickle.UnpicklingError):
        torch.load(path, weights_only=True)


def _mmengine_checkpoint(state: dict[str, torch.Tensor]) -> dict:
    """What mmengine's Runner.save_checkpoint writes (meta, message hub, optimizer, schedulers)."""
    from mmengine.logging import MessageHub

    hub = MessageHub.get_instance("test_safe_loading")
    for value in (2.0, 1.5, 1.0):
        hub.update_scalar("train/loss", value)
    hub.update_info("eta", np.float64(12.5))
    hub.update_info("dataset_meta", {"classes": ("car", "pedestrian"), "palette": np.zeros((2, 3), np.uint8)})
    model = nn.Linear(3, 2)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model(torch.ones(1, 3)).sum().backward()
    optimizer.step()
    scheduler = torch.optim.lr_scheduler.LinearLR(optimizer, start_factor=0.1)
    return {"meta": {"epoch": 1, "iter": 15, "cfg": "model = dict(type='X')", "seed": 0,
                     "mmengine_version": "0.10.7", "dataset_meta": {"classes": ("car", "pedestrian")}},
            "state_dict": OrderedDict(state), "message_hub": hub.state_dict(), "optimizer": optimizer.state_dict(),
            "param_schedulers": [scheduler.state_dict()]}


def _install_fake_yacs(monkeypatch) -> type:
    """A ``yacs.config.CfgNode`` with yacs's pickled structure: a dict subclass whose instance dict
    holds the immutable/new-allowed flags and key sets (the official classification checkpoints
    pickle their training config as one)."""
    package, module = types.ModuleType("yacs"), types.ModuleType("yacs.config")

    class CfgNode(dict):
        def __init__(self, init_dict=None, new_allowed=False):
            super().__init__({k: CfgNode(v) if isinstance(v, dict) else v for k, v in (init_dict or {}).items()})
            self.__dict__["__immutable__"] = False
            self.__dict__["__deprecated_keys__"] = set()
            self.__dict__["__renamed_keys__"] = {}
            self.__dict__["__new_allowed__"] = new_allowed

    CfgNode.__module__, CfgNode.__qualname__ = "yacs.config", "CfgNode"
    module.CfgNode, package.config = CfgNode, module
    monkeypatch.setitem(sys.modules, "yacs", package)
    monkeypatch.setitem(sys.modules, "yacs.config", module)
    return CfgNode


def _official_classification_checkpoint(state: dict[str, torch.Tensor], cfg_node: type) -> dict:
    """The keys of an official InternImage classification training checkpoint."""
    model = nn.Linear(3, 2)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model(torch.ones(1, 3)).sum().backward()
    optimizer.step()
    config = cfg_node({"MODEL": {"TYPE": "intern_image", "INTERN_IMAGE": {"DEPTHS": [4, 4, 18, 4]}},
                       "TRAIN": {"EPOCHS": 300, "BASE_LR": 5e-4}, "TAG": "default"})
    return {"model": state, "model_ema": {k: v + 1 for k, v in state.items()}, "optimizer": optimizer.state_dict(),
            "lr_scheduler": {"t_initial": 300, "lr_min": 1e-5, "base_values": [5e-4], "noise_range_t": None},
            "max_accuracy": 83.5, "epoch": 299, "config": config,
            "amp": {"scale": 65536.0, "growth_factor": 2.0, "backoff_factor": 0.5, "growth_interval": 2000,
                    "_growth_tracker": 0}}


def _official_detection_checkpoint(state: dict[str, torch.Tensor]) -> dict:
    """mmdet 2.x (official detection/segmentation checkpoints): ``backbone.`` keys, meta with numpy."""
    return {"meta": {"mmdet_version": "2.28.1", "CLASSES": ("person", "car"), "epoch": 12, "iter": 87936,
                     "config": "model = dict(type='MaskRCNN')", "hook_msgs": {"best_score": np.float64(0.47)}},
            "state_dict": OrderedDict((f"backbone.{k}", v) for k, v in state.items()),
            "optimizer": {"state": {}, "param_groups": [{"lr": 1e-4, "params": [0]}]}}


def test_mmengine_checkpoint_loads_with_the_allow_list(make_tiny, seeded, tmp_path, full_unpickling_calls) -> None:
    from mmengine.logging import HistoryBuffer

    source = make_tiny("b")
    path = tmp_path / "iter_15.pth"
    torch.save(_mmengine_checkpoint({f"backbone.{k}": v for k, v in source.state_dict().items()}), path)
    loaded = load_checkpoint_file(path)
    buffer = loaded["message_hub"]["log_scalars"]["train/loss"]
    assert isinstance(buffer, HistoryBuffer)
    assert buffer.mean() == pytest.approx(1.5) and buffer.current() == 1.0
    assert loaded["message_hub"]["runtime_info"]["eta"] == 12.5
    assert loaded["message_hub"]["runtime_info"]["dataset_meta"]["palette"].shape == (2, 3)
    target = make_tiny("b")
    assert load_pretrained(target, path).ok
    assert all(torch.equal(v, source.state_dict()[k]) for k, v in target.state_dict().items())
    assert full_unpickling_calls == []


def test_official_classification_checkpoint_loads_without_yacs(make_tiny, seeded, tmp_path, monkeypatch,
                                                               full_unpickling_calls) -> None:
    source = make_tiny("b")
    path = tmp_path / "internimage_b_1k_224.pth"
    with monkeypatch.context() as patch:  # yacs exists while saving only, as on the machine that trained
        torch.save(_official_classification_checkpoint(source.state_dict(), _install_fake_yacs(patch)), path)
    assert "yacs" not in sys.modules
    loaded = load_checkpoint_file(path)
    assert loaded["config"]["MODEL"]["INTERN_IMAGE"]["DEPTHS"] == [4, 4, 18, 4]
    assert loaded["config"]["TRAIN"]["EPOCHS"] == 300 and loaded["epoch"] == 299
    target = make_tiny("b")
    assert load_pretrained(target, path).ok
    assert torch.equal(target.state_dict()["head.bias"], source.state_dict()["head.bias"])
    load_pretrained(target, path, use_ema=True)
    assert torch.equal(target.state_dict()["head.bias"], source.state_dict()["head.bias"] + 1)
    assert full_unpickling_calls == []


def test_official_detection_checkpoint_loads_into_a_backbone(make_tiny, seeded, tmp_path,
                                                             full_unpickling_calls) -> None:
    source = make_tiny("b")
    path = tmp_path / "mask_rcnn_internimage_b.pth"
    torch.save(_official_detection_checkpoint(source.state_dict()), path)
    backbone = backbones.create_backbone("internimage_b", pretrained=path, channels=32, depths=(1, 1, 2, 1),
                                         groups=(2, 4, 8, 16))
    for key, value in backbone.state_dict().items():
        assert torch.equal(value, source.state_dict()[key]), key
    assert full_unpickling_calls == []


def test_fp16_safetensors_into_fp32_loads_with_a_notice(make_tiny, seeded, tmp_path) -> None:
    source = make_tiny("b")
    half = {k: v.half() if v.is_floating_point() else v for k, v in source.state_dict().items()}
    path = save_checkpoint(half, tmp_path / "half.safetensors")
    target = make_tiny("b")
    with pytest.warns(UserWarning, match=r"half.safetensors: cast \d+ float tensor\(s\).*torch.float16 -> "
                                         r"torch.float32.*patch_embed.conv1.weight"):
        report = load_pretrained(target, path)
    assert report.ok and len(report.cast) == sum(v.dtype == torch.float16 for v in half.values())
    for key, value in target.state_dict().items():
        assert value.dtype == source.state_dict()[key].dtype
        assert torch.equal(value, half[key].to(torch.float64).to(value.dtype)), key


def test_int64_safetensors_into_float_is_refused(make_tiny, seeded, tmp_path) -> None:
    source = make_tiny("b")
    state = source.state_dict()
    state["head.bias"] = torch.arange(state["head.bias"].numel(), dtype=torch.int64)
    state["patch_embed.conv1.bias"] = torch.zeros_like(state["patch_embed.conv1.bias"], dtype=torch.bool)
    path = save_checkpoint(state, tmp_path / "ints.safetensors")
    target = make_tiny("b")
    before = {k: v.clone() for k, v in target.state_dict().items()}
    for strict in (True, False):
        with pytest.raises(CheckpointMismatchError) as err:
            load_pretrained(target, path, strict=strict)
        message = str(err.value)
        assert message.startswith(f"{path}: 2 tensor(s) of a dtype that cannot be cast")
        assert "head.bias: checkpoint torch.int64 vs model torch.float32" in message
        assert "patch_embed.conv1.bias: checkpoint torch.bool vs model torch.float32" in message
    assert all(torch.equal(v, before[k]) for k, v in target.state_dict().items())  # nothing loaded


def test_float_into_an_integer_buffer_is_refused() -> None:
    class Counter(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.register_buffer("count", torch.tensor(3, dtype=torch.int64))

    with pytest.raises(CheckpointMismatchError, match="count: checkpoint torch.float32 vs model torch.int64"):
        load_pretrained(Counter(), {"count": torch.tensor(2.7)})


def test_create_model_reports_file_errors_intact(make_tiny, seeded, tmp_path) -> None:
    empty = _empty(tmp_path)
    with pytest.raises(CheckpointError, match=f"^{empty}: the checkpoint file is empty"):
        make_tiny("b", pretrained=empty)
    other = tmp_path / "wider.safetensors"
    save_checkpoint(make_tiny("b", channels=64, depths=(1, 1, 3, 1)), other)
    with pytest.raises(CheckpointMismatchError) as err:
        make_tiny("b", pretrained=other)
    message = str(err.value)
    assert message.startswith(f"{other}: checkpoint does not match the model (wrong variant? the checkpoint has "
                              "channels 64, depths (1, 1, 3, 1), the model channels 32, depths (1, 1, 2, 1))")
    assert "wrong shape" in message


def test_not_a_model_checkpoint_names_the_file(make_tiny, tmp_path) -> None:
    path = tmp_path / "metrics.pth"
    torch.save({"accuracy": 0.5}, path)
    with pytest.raises(CheckpointError, match=f"^{path}: not a model checkpoint: no tensors found"):
        load_pretrained(make_tiny(), path)


def test_missing_ema_names_the_file(make_tiny, tmp_path) -> None:
    path = tmp_path / "no_ema.pth"
    torch.save({"model": make_tiny().state_dict()}, path)
    with pytest.raises(CheckpointError, match=f"^{path}: use_ema=True but the checkpoint has no 'model_ema'"):
        load_pretrained(make_tiny(), path, use_ema=True)
