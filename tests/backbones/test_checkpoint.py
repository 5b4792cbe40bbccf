"""Checkpoint loading: strict round trip and every accepted container/naming form."""

from __future__ import annotations

import pytest
import torch

import backbones
from backbones.checkpoint import load_pretrained


@pytest.fixture
def source(seeded, make_tiny) -> backbones.InternImageClassifier:
    model = make_tiny("b")  # B-like: has layer-scale gammas and no stage norms
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.01)
    return model.eval()


def _same(a: torch.nn.Module, b: torch.nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sorted(sa) == sorted(sb)
    for k in sa:
        assert torch.equal(sa[k], sb[k]), k


def _wrap_forms(state: dict) -> dict:
    return {
        "bare": state,
        "model": {"model": state, "epoch": 3},
        "state_dict": {"state_dict": state, "meta": {}},
        "module": {"module": state},
        "model_ema": {"model_ema": state},
        "ddp_prefix": {"model": {f"module.{k}": v for k, v in state.items()}},
        "hf": {f"model.{k.replace('gamma1', 'layer_scale1').replace('gamma2', 'layer_scale2')}": v
               for k, v in state.items()},
    }


@pytest.mark.parametrize("form", ["bare", "model", "state_dict", "module", "model_ema", "ddp_prefix", "hf"])
def test_wrapped_checkpoints_load_strictly(make_tiny, source, tmp_path, form: str) -> None:
    path = tmp_path / "ckpt.pth"
    torch.save(_wrap_forms(source.state_dict())[form], path)
    target = make_tiny("b")
    report = load_pretrained(target, path, strict=True)
    assert report.ok and not report.filled_with_ones
    _same(source, target)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(source(x), target.eval()(x))


def test_model_ema_preferred_when_asked(make_tiny, source, tmp_path) -> None:
    other = {k: v + 1 if v.is_floating_point() else v for k, v in source.state_dict().items()}
    path = tmp_path / "train.pth"
    torch.save({"model": source.state_dict(), "model_ema": other, "epoch": 1}, path)
    target = make_tiny("b")
    load_pretrained(target, path, use_ema=True)
    assert torch.equal(target.state_dict()["head.bias"], source.state_dict()["head.bias"] + 1)
    load_pretrained(target, path)
    _same(source, target)


def test_safetensors_round_trip(make_tiny, source, tmp_path) -> None:
    path = backbones.save_checkpoint(source, tmp_path / "model.safetensors")
    target = make_tiny("b")
    assert load_pretrained(target, path).ok
    _same(source, target)


def test_mmdet_checkpoint_into_backbone_and_classifier(make_tiny, source, tmp_path) -> None:
    state = {f"backbone.{k}": v for k, v in source.state_dict().items() if not k.startswith(("head.", "conv_head."))}
    state["neck.fpn.weight"] = torch.zeros(3)
    path = tmp_path / "mask_rcnn.pth"
    torch.save({"state_dict": state, "meta": {"epoch": 12}}, path)
    backbone = backbones.create_backbone("internimage_b", pretrained=path, channels=32, depths=(1, 1, 2, 1),
                                         groups=(2, 4, 8, 16))
    for k, v in backbone.state_dict().items():
        assert torch.equal(v, source.state_dict()[k]), k
    # a classifier needs its head: strict loading reports the missing head keys in the table
    with pytest.raises(RuntimeError, match=r"missing .*head\.weight"):
        load_pretrained(make_tiny("b"), path)
    assert load_pretrained(make_tiny("b"), path, head="drop").ok


def test_classifier_checkpoint_into_backbone_drops_head(source, tmp_path) -> None:
    path = tmp_path / "cls.pth"
    torch.save({"model": source.state_dict()}, path)
    backbone = backbones.create_backbone("internimage_b", pretrained=path, channels=32, depths=(1, 1, 2, 1),
                                         groups=(2, 4, 8, 16))
    report = load_pretrained(backbone, path)
    assert report.ok and "head.weight" in report.dropped and "conv_head.0.weight" in report.dropped


def test_t_checkpoint_without_gammas_loads_into_layer_scale_model(make_tiny, seeded, tmp_path) -> None:
    t = make_tiny("t").eval()  # T: no layer scale, so its checkpoint has no gammas
    path = tmp_path / "t.pth"
    torch.save({"model": t.state_dict()}, path)
    downstream = make_tiny("t", layer_scale=1e-5)  # gammas present, initialised to 1e-5
    report = load_pretrained(downstream, path, strict=True)
    assert report.filled_with_ones and all(k.endswith(("gamma1", "gamma2")) for k in report.filled_with_ones)
    assert len(report.filled_with_ones) == 2 * 5
    assert torch.equal(downstream.levels[0].blocks[0].gamma1, torch.ones(32))
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(downstream.eval()(x), t(x), atol=1e-6)


def test_wrong_shapes_and_unexpected_keys_are_tabulated(make_tiny, source, tmp_path) -> None:
    state = dict(source.state_dict())
    state["head.weight"] = torch.zeros(7, state["head.weight"].shape[1])
    state["extra.thing"] = torch.zeros(1)
    del state["levels.0.blocks.0.mlp.fc1.bias"]
    with pytest.raises(RuntimeError) as err:
        load_pretrained(make_tiny("b"), state)
    text = str(err.value)
    assert "wrong shape" in text and "head.weight" in text and "[7, 384]" in text
    assert "unexpected" in text and "extra.thing" in text
    assert "missing" in text and "levels.0.blocks.0.mlp.fc1.bias" in text
    with pytest.warns(UserWarning, match="partially"):
        report = load_pretrained(make_tiny("b"), state, strict=False)
    assert report.missing == ["levels.0.blocks.0.mlp.fc1.bias"] and report.unexpected == ["extra.thing"]


def test_22k_head_mapped_to_1k(make_tiny, source, tmp_path) -> None:
    big = make_tiny("b", num_classes=40)
    state = big.state_dict()
    indices = [3, 17, 0, 39, 8, 21, 5, 11, 30, 2]
    (tmp_path / "map.txt").write_text("\n".join(map(str, indices)) + "\n")
    target = make_tiny("b", num_classes=10)
    assert load_pretrained(target, state, head="map", class_map=tmp_path / "map.txt").ok
    assert torch.equal(target.head.weight, state["head.weight"][indices])
    assert torch.equal(target.head.bias, state["head.bias"][indices])


def test_head_dropped_for_new_num_classes(make_tiny, source) -> None:
    target = make_tiny("b", num_classes=3)
    head_before = target.head.weight.clone()
    report = load_pretrained(target, source.state_dict(), head="drop")
    assert report.ok and torch.equal(target.head.weight, head_before)
    assert torch.equal(target.levels[3].blocks[0].mlp.fc2.weight, source.levels[3].blocks[0].mlp.fc2.weight)


def test_missing_file_names_the_path(make_tiny, tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match="nope.pth"):
        load_pretrained(make_tiny(), tmp_path / "nope.pth")


def test_export_mmengine_checkpoint_to_official_safetensors(make_tiny, source, tmp_path) -> None:
    from backbones.checkpoint import export_safetensors

    wrapped = {"meta": {"epoch": 2}, "state_dict": {f"backbone.{k}": v for k, v in source.state_dict().items()}}
    torch.save(wrapped, tmp_path / "epoch_2.pth")
    out = export_safetensors(tmp_path / "epoch_2.pth", tmp_path / "model.safetensors")
    from safetensors.torch import load_file

    assert sorted(load_file(str(out))) == sorted(source.state_dict())
    target = make_tiny("b")
    assert load_pretrained(target, out).ok
