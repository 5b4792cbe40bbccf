"""mmengine's Runner reads checkpoints (``load_from``, resume, the tools/test.py checkpoint) through
backbones.checkpoint.load_checkpoint_file once tools/_runner_common.allow_runner_checkpoints is
registered: its own checkpoints (message hub, numpy arrays) load without full unpickling, foreign
types need ``--trust-checkpoint`` (docs/backbones.md, "Loading checkpoints")."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader

from backbones.checkpoint import CheckpointNeedsTrustError, load_checkpoint_file, trust_all_checkpoints
from tests.pickled_objects import CustomPayload, ShellCommand
from tests.tool_loader import import_helper


def _toy_model() -> nn.Module:
    from mmengine.model import BaseModel

    class Regressor(BaseModel):
        def __init__(self) -> None:
            super().__init__()
            self.linear = nn.Linear(2, 1)

        def forward(self, inputs, targets=None, mode="tensor"):
            prediction = self.linear(inputs).squeeze(-1)
            if mode == "loss":
                return {"loss": ((prediction - targets) ** 2).mean()}
            if mode == "predict":
                return [{"error": float(e)} for e in (prediction - targets).abs()]
            return prediction

    return Regressor()


def _loader() -> DataLoader:
    generator = torch.Generator().manual_seed(0)
    inputs = torch.randn(8, 2, generator=generator)
    samples = [{"inputs": x, "targets": x.sum()} for x in inputs]
    return DataLoader(samples, batch_size=4, shuffle=False)


def _runner(work_dir: Path, name: str, max_iters: int, **kwargs):
    from mmengine.evaluator import BaseMetric, Evaluator
    from mmengine.runner import Runner

    class MeanError(BaseMetric):
        def process(self, data_batch, data_samples) -> None:
            self.results += [s["error"] for s in data_samples]

        def compute_metrics(self, results) -> dict:
            return {"mean_error": sum(results) / len(results)}

    return Runner(model=_toy_model(), work_dir=str(work_dir), experiment_name=name,
                  train_dataloader=_loader(), train_cfg=dict(by_epoch=False, max_iters=max_iters, val_interval=1000),
                  optim_wrapper=dict(optimizer=dict(type="SGD", lr=0.01)),
                  test_dataloader=_loader(), test_cfg=dict(), test_evaluator=Evaluator([MeanError()]),
                  default_hooks=dict(checkpoint=dict(type="CheckpointHook", interval=1, by_epoch=False)),
                  default_scope="mmengine", **kwargs)


@pytest.fixture
def full_unpickling_calls(monkeypatch) -> list[str]:
    calls: list[str] = []
    real_load = torch.load

    def recording_load(f, *args, **kwargs):
        if kwargs.get("weights_only") is False:
            calls.append(str(f))
        return real_load(f, *args, **kwargs)

    monkeypatch.setattr(torch, "load", recording_load)
    return calls


@pytest.fixture
def runner_common() -> Iterator:
    """The tools' set-up module, with the safe loader registered; the trust opt-in reset afterwards."""
    module = import_helper("_runner_common")
    module.allow_runner_checkpoints()
    try:
        yield module
    finally:
        module.allow_runner_checkpoints(trusted=False)
        trust_all_checkpoints(False)


def test_runner_resumes_and_tests_its_checkpoints_without_full_unpickling(tmp_path, runner_common,
                                                                           full_unpickling_calls) -> None:
    work_dir = tmp_path / "work"
    _runner(work_dir, "safe_first", max_iters=2).train()
    assert (work_dir / "iter_2.pth").is_file()

    from mmengine.hooks import Hook

    class CountIterations(Hook):
        def __init__(self) -> None:
            self.count = 0

        def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None) -> None:
            self.count += 1

    counter = CountIterations()
    resumed = _runner(work_dir, "safe_resumed", max_iters=3, resume=True, load_from=str(work_dir / "iter_2.pth"),
                      custom_hooks=[counter])
    resumed.train()
    assert counter.count == 1 and resumed.iter == 3  # went on from iteration 2
    assert (work_dir / "iter_3.pth").is_file()
    assert len(resumed.message_hub.get_scalar("train/loss").data[0]) == 3  # the resumed history buffer, + 1

    tested = _runner(work_dir, "safe_tested", max_iters=3, load_from=str(work_dir / "iter_3.pth"))
    metrics = tested.test()
    saved = load_checkpoint_file(work_dir / "iter_3.pth")["state_dict"]
    assert torch.equal(tested.model.linear.weight, saved["linear.weight"])
    assert metrics["mean_error"] >= 0
    assert full_unpickling_calls == []


def test_runner_refuses_foreign_types_unless_trusted(tmp_path, runner_common, full_unpickling_calls) -> None:
    work_dir = tmp_path / "work"
    _runner(work_dir, "trust_first", max_iters=1).train()
    checkpoint = load_checkpoint_file(work_dir / "iter_1.pth")

    marker = tmp_path / "marker"
    hostile = tmp_path / "hostile.pth"
    torch.save({**checkpoint, "meta": {**checkpoint["meta"], "extra": ShellCommand(marker)}}, hostile)
    with pytest.raises(CheckpointNeedsTrustError, match=f"^{hostile}: needs full unpickling.*posix.system"):
        _runner(work_dir, "trust_hostile", max_iters=1, load_from=str(hostile)).test()
    assert not marker.exists() and full_unpickling_calls == []

    custom = tmp_path / "custom.pth"
    torch.save({**checkpoint, "meta": {**checkpoint["meta"], "extra": CustomPayload(3)}}, custom)
    with pytest.raises(CheckpointNeedsTrustError, match="--trust-checkpoint"):
        _runner(work_dir, "trust_custom", max_iters=1, load_from=str(custom)).test()
    runner_common.allow_runner_checkpoints(trusted=True)
    _runner(work_dir, "trust_custom_trusted", max_iters=1, load_from=str(custom)).test()
    assert full_unpickling_calls == [str(custom)]


@pytest.mark.parametrize("tool", ["train", "test", "demo"])
def test_runner_tools_take_the_trust_flag(tool: str) -> None:
    from tests.tool_loader import load_tool

    module = load_tool(tool)
    positional = {"train": ["config.py"], "test": ["config.py", "model.pth"], "demo": ["--out", "out"]}[tool]
    assert module.parse_args(positional).trust_checkpoint is False
    assert module.parse_args([*positional, "--trust-checkpoint"]).trust_checkpoint is True


def test_extract_features_loads_a_foreign_checkpoint_only_when_trusted(tmp_path, capsys,
                                                                      full_unpickling_calls) -> None:
    from PIL import Image

    import backbones
    from tests.tool_loader import load_tool

    tiny = ["channels=32", "depths=(1,1,2,1)", "groups=(2,4,8,16)"]
    model = backbones.create_model("internimage_t", num_classes=4, channels=32, depths=(1, 1, 2, 1),
                                   groups=(2, 4, 8, 16))
    checkpoint = tmp_path / "with_payload.pth"
    torch.save({"model": model.state_dict(), "extra": CustomPayload(1)}, checkpoint)
    image = tmp_path / "image.png"
    Image.new("RGB", (40, 32), (120, 30, 200)).save(image)
    arguments = ["internimage_t", str(image), "--checkpoint", str(checkpoint), "--num-classes", "4",
                 "--keys", "levels.0", "--size", "32", "--model-args", *tiny]
    tool = load_tool("extract_features")
    try:
        with pytest.raises(CheckpointNeedsTrustError, match=f"^{checkpoint}: .*--trust-checkpoint"):
            tool.main(arguments)
        assert full_unpickling_calls == []
        features = tool.main([*arguments, "--trust-checkpoint"])
    finally:
        trust_all_checkpoints(False)
    assert full_unpickling_calls == [str(checkpoint)]
    assert "all keys matched" in capsys.readouterr().out
    assert features["levels.0"].shape[-1] == 64  # stage 0 after its downsampling (channels-last): 2 x 32
