"""Classification data, transforms, mixup, metric, model wrapper and optimizer constructor."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch
from PIL import Image

from perception.data.classification import (
    SHAPE_CLASSES,
    CenterCrop,
    FileListDataset,
    ImageFolderDataset,
    MixupCutmix,
    PackClsInputs,
    RandAugment,
    RandomErasing,
    RandomResizedCrop,
    ResizeShorter,
    ShapesDataset,
    generate_shapes_dataset,
)
from perception.data.classification.transforms import RAND_AUGMENT_OPS
from perception.evaluation.classification import TopKAccuracy, topk_accuracy


@pytest.fixture(scope="module")
def shapes_root(tmp_path_factory):
    return generate_shapes_dataset(tmp_path_factory.mktemp("shapes"), train_per_class=4, val_per_class=2,
                                   image_size=32)


def test_shapes_set_layout_and_determinism(shapes_root, tmp_path) -> None:
    assert (shapes_root / "classes.txt").read_text().split() == list(SHAPE_CLASSES)
    assert len(list((shapes_root / "train").rglob("*.png"))) == 8 * 4
    assert len((shapes_root / "val.txt").read_text().splitlines()) == 8 * 2
    again = generate_shapes_dataset(tmp_path / "again", train_per_class=4, val_per_class=2, image_size=32)
    a = np.asarray(Image.open(shapes_root / "train/ring/ring_00003.png"))
    b = np.asarray(Image.open(again / "train/ring/ring_00003.png"))
    assert a.shape == (32, 32, 3) and np.array_equal(a, b)


def test_folder_and_file_list_datasets(shapes_root) -> None:
    pipeline = [dict(type="LoadImage"), dict(type="PackClsInputs")]
    folder = ImageFolderDataset(str(shapes_root / "train"), pipeline=pipeline)
    assert len(folder) == 32 and folder.classes == sorted(SHAPE_CLASSES)  # sorted folder names
    sample = folder[5]
    assert sample["inputs"].shape == (3, 32, 32) and sample["data_samples"] == folder.samples[5][1]
    listed = FileListDataset(str(shapes_root), "val.txt", pipeline=pipeline, classes=str(shapes_root / "classes.txt"))
    assert len(listed) == 16 and listed.classes == list(SHAPE_CLASSES)
    assert listed.samples[2][1] == 1 and "square" in listed.samples[2][0]  # 2 per class, class 1 = square
    shapes = ShapesDataset(str(shapes_root), split="val", pipeline=pipeline, train_per_class=4, val_per_class=2,
                           image_size=32)
    assert shapes.classes == list(SHAPE_CLASSES) and len(shapes) == 16


def test_bad_paths_are_named(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match="nowhere"):
        ImageFolderDataset(str(tmp_path / "nowhere"))
    (tmp_path / "list.txt").write_text("a.png notanumber\n")
    with pytest.raises(ValueError, match="list.txt:1"):
        FileListDataset(str(tmp_path), "list.txt")


def test_eval_transform_resize_then_centre_crop() -> None:
    img = Image.fromarray(np.arange(100 * 60 * 3, dtype=np.uint8).reshape(60, 100, 3) % 251)
    out = ResizeShorter(30)({"img": img})["img"]
    assert out.size == (50, 30)  # shorter side 30, aspect kept
    cropped = CenterCrop(30)({"img": out})["img"]
    assert cropped.size == (30, 30)
    assert np.array_equal(np.asarray(cropped), np.asarray(out)[:, 10:40])  # left = round((50 - 30) / 2)


def test_pack_normalises_with_imagenet_statistics() -> None:
    img = Image.new("RGB", (4, 4), (255, 0, 128))
    packed = PackClsInputs()({"img": img, "gt_label": 3})
    expected = [(1.0 - 0.485) / 0.229, (0.0 - 0.456) / 0.224, (128 / 255 - 0.406) / 0.225]
    assert packed["data_samples"] == 3
    torch.testing.assert_close(packed["inputs"][:, 0, 0], torch.tensor(expected))


def test_random_resized_crop_and_randaugment_keep_size() -> None:
    random.seed(0)
    img = Image.fromarray(np.random.default_rng(0).integers(0, 255, (40, 50, 3), dtype=np.uint8))
    assert RandomResizedCrop(24)({"img": img})["img"].size == (24, 24)
    for name, op in RAND_AUGMENT_OPS.items():
        out = op(img, 0.9)
        assert out.size == img.size and out.mode == "RGB", name
    augmented = RandAugment(num_ops=2, magnitude=9, magnitude_std=0.5, prob=1.0)({"img": img})["img"]
    assert augmented.size == img.size
    with pytest.raises(ValueError, match="Nope"):
        RandAugment(ops=["Nope"])


def test_random_erasing_changes_one_box() -> None:
    random.seed(1)
    inputs = torch.zeros(3, 32, 32)
    out = RandomErasing(prob=1.0)({"inputs": inputs})["inputs"]
    changed = (out != 0).any(0)
    rows, cols = changed.any(1).nonzero(), changed.any(0).nonzero()
    area = (rows.max() - rows.min() + 1) * (cols.max() - cols.min() + 1)
    assert 0.02 * 1024 * 0.5 <= area <= 1024 / 3 * 1.5 and changed.sum() == area


def test_mixup_targets() -> None:
    labels = torch.tensor([0, 1, 2, 3])
    images = torch.arange(4.0).view(4, 1, 1, 1).expand(4, 3, 8, 8).contiguous()
    # no mixing: label smoothing only (off = 0.1 / 4, on = 0.9 + off)
    _, targets = MixupCutmix(4, mixup_alpha=0.0, cutmix_alpha=0.0, label_smoothing=0.1)(images, labels)
    assert torch.allclose(targets[0], torch.tensor([0.925, 0.025, 0.025, 0.025]))
    np.random.seed(0)
    mixed, targets = MixupCutmix(4, mixup_alpha=0.8, cutmix_alpha=0.0, label_smoothing=0.0)(images, labels)
    lam = float(1 - mixed[0, 0, 0, 0] / 3)  # image 0 (value 0) mixed with image 3 (value 3)
    assert torch.allclose(targets.sum(1), torch.ones(4))
    assert targets[0, 0].item() == pytest.approx(lam, abs=1e-6) and targets[0, 3].item() == pytest.approx(1 - lam)
    np.random.seed(1)
    mixed, targets = MixupCutmix(4, mixup_alpha=0.0, cutmix_alpha=1.0, label_smoothing=0.0)(images, labels)
    pasted = (mixed[0, 0] == 3).float().mean().item()  # fraction of image 0 taken from image 3
    assert targets[0, 3].item() == pytest.approx(pasted) and targets[0, 0].item() == pytest.approx(1 - pasted)


def test_topk_accuracy_by_hand() -> None:
    scores = torch.tensor([[0.1, 0.5, 0.2, 0.15, 0.05, 0.0],   # label 1: top-1 hit
                           [0.3, 0.1, 0.2, 0.25, 0.1, 0.05],  # label 2: rank 3 -> top-5 hit only
                           [0.0, 0.1, 0.2, 0.3, 0.15, 0.25]])  # label 0: rank 6 -> miss
    labels = torch.tensor([1, 2, 0])
    assert topk_accuracy(scores, labels) == {1: pytest.approx(100 / 3), 5: pytest.approx(200 / 3)}
    metric = TopKAccuracy()
    metric.process(None, [{"pred_score": s, "gt_label": int(g)} for s, g in zip(scores, labels)])
    assert metric.compute_metrics(metric.results) == {"top1": pytest.approx(100 / 3), "top5": pytest.approx(200 / 3)}


def _tiny_classifier_cfg(num_classes: int = 4, **kwargs) -> dict:
    return dict(type="ImageClassifier", label_smoothing=0.1, backbone=dict(
        type="InternImageClassifier", variant="t", channels=16, depths=(1, 1, 1, 1), groups=(1, 2, 4, 8),
        num_classes=num_classes), **kwargs)


def test_classifier_modes_and_registry() -> None:
    import perception.models  # noqa: F401  (registers ImageClassifier)
    from perception.engine import MODELS, register_lower_layers

    register_lower_layers()
    backbone = MODELS.build(dict(type="InternImage", variant="t", channels=16, depths=(1, 1, 1, 1),
                                 groups=(1, 2, 4, 8), out_indices=(2, 3)))
    assert backbone.out_channels == [64, 128]
    torch.manual_seed(0)
    model = MODELS.build(_tiny_classifier_cfg(batch_augments=dict(mixup_alpha=0.8, cutmix_alpha=1.0)))
    x, y = torch.randn(4, 3, 32, 32), torch.tensor([0, 1, 2, 3])
    loss = model(x, y, mode="loss")["loss"]
    assert loss.ndim == 0 and torch.isfinite(loss)
    preds = model.eval()(x, y, mode="predict")
    assert len(preds) == 4 and preds[2]["gt_label"] == 2 and preds[0]["pred_score"].shape == (4,)
    assert model(x, mode="tensor").shape == (4, 4)
    with torch.autocast("cpu", dtype=torch.bfloat16):  # AMP path (bf16 on CPU)
        assert torch.isfinite(model.train()(x, y, mode="loss")["loss"])
    # checkpoint keys are the official ones under "backbone."
    assert "backbone.levels.0.blocks.0.dcn.offset.weight" in model.state_dict()


def test_layer_decay_optim_wrapper_constructor() -> None:
    from mmengine.optim import build_optim_wrapper
    from mmengine.registry import DefaultScope

    import perception.models  # noqa: F401
    from perception.engine import MODELS

    model = MODELS.build(_tiny_classifier_cfg())
    with DefaultScope.overwrite_default_scope("perception"):  # as the Runner does with default_scope
        wrapper = build_optim_wrapper(model, dict(
        optimizer=dict(type="AdamW", lr=1.0, weight_decay=0.05), constructor="LayerDecayOptimWrapperConstructor",
        paramwise_cfg=dict(layer_decay=0.5), clip_grad=dict(max_norm=5.0)))
    lr_of = {}
    for group in wrapper.optimizer.param_groups:
        for p in group["params"]:
            lr_of[id(p)] = (group["lr"], group["weight_decay"])
    bb = model.backbone
    # depths (1, 1, 1, 1): levels.3.b0 -> 0.5**0, levels.2.b0 -> 0.5**1, levels.1.b0 -> 0.5**2, levels.0.b0 -> 0.5**3
    assert lr_of[id(bb.levels[3].blocks[0].mlp.fc1.weight)] == (1.0, 0.05)
    assert lr_of[id(bb.levels[1].blocks[0].mlp.fc1.weight)] == (0.25, 0.05)
    assert lr_of[id(bb.patch_embed.conv1.weight)] == (0.125, 0.05)
    assert lr_of[id(bb.levels[0].downsample.conv.weight)] == (0.25, 0.05)
    assert lr_of[id(bb.head.bias)] == (1.0, 0.0)
    with pytest.raises(ValueError, match="bogus"), DefaultScope.overwrite_default_scope("perception"):
        build_optim_wrapper(model, dict(optimizer=dict(type="AdamW", lr=1.0),
                                        constructor="LayerDecayOptimWrapperConstructor", paramwise_cfg=dict(bogus=1)))
