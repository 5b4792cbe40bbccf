"""Features, gradients, checkpointing, frozen stages and the residual/norm semantics of a block."""

from __future__ import annotations

import pytest
import torch

import backbones
from backbones.internimage import InternImageLayer


def test_features_have_strides_4_8_16_32_and_exposed_channels(seeded, tiny_arch) -> None:
    model = backbones.create_backbone("internimage_t", **tiny_arch).eval()
    assert model.out_channels == [32, 64, 128, 256] and model.out_strides == [4, 8, 16, 32]
    with torch.no_grad():
        feats = model(torch.randn(2, 3, 96, 64))
    assert [tuple(f.shape) for f in feats] == [(2, 32, 24, 16), (2, 64, 12, 8), (2, 128, 6, 4), (2, 256, 3, 2)]
    assert all(f.is_contiguous() for f in feats)
    sub = backbones.create_backbone("internimage_t", out_indices=(1, 3), **tiny_arch).eval()
    assert sub.out_channels == [64, 256]
    with torch.no_grad():
        assert [f.shape[1] for f in sub(torch.randn(1, 3, 64, 64))] == [64, 256]


def test_real_t_backbone_shapes(seeded) -> None:
    model = backbones.create_backbone("internimage_t").eval()
    assert model.out_channels == [64, 128, 256, 512]
    with torch.no_grad():
        feats = model(torch.randn(1, 3, 64, 64))
    assert [tuple(f.shape[1:]) for f in feats] == [(64, 16, 16), (128, 8, 8), (256, 4, 4), (512, 2, 2)]


@pytest.mark.parametrize("variant", ["t", "b", "h", "g"])
def test_gradient_reaches_every_parameter(seeded, make_tiny, variant: str) -> None:
    kwargs = dict(level2_post_norm_block_ids=(0, 1)) if variant in "hg" else {}
    model = make_tiny(variant, **kwargs).train()
    # at init the offset/mask layers are zero, which blocks the path to dw_conv; perturb like training would
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.01)
    model(torch.randn(2, 3, 64, 64)).logsumexp(-1).sum().backward()
    without = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert without == []


def test_with_cp_gives_the_same_gradients(seeded, make_tiny) -> None:
    model = make_tiny("b")
    x = torch.randn(2, 3, 64, 64)
    model(x).square().sum().backward()
    reference = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad()
    model.with_cp = True
    assert all(b.with_cp for lvl in model.levels for b in lvl.blocks)
    model(x).square().sum().backward()
    for name, p in model.named_parameters():
        torch.testing.assert_close(p.grad, reference[name], rtol=1e-5, atol=1e-7, msg=name)


def test_frozen_stages(seeded, tiny_arch) -> None:
    model = backbones.create_backbone("internimage_t", frozen_stages=2, **tiny_arch)
    model.train()
    for i, level in enumerate(model.levels):
        assert all(p.requires_grad == (i >= 2) for p in level.parameters())
        assert all(m.training == (i >= 2) for m in level.modules())
    assert all(p.requires_grad for p in model.patch_embed.parameters())  # the stem is never frozen upstream
    model(torch.randn(1, 3, 64, 64))[-1].sum().backward()
    assert all(p.grad is None for p in model.levels[0].parameters())
    assert all(p.grad is not None for p in model.levels[3].parameters())


def _layer(**kwargs) -> InternImageLayer:
    layer = InternImageLayer(channels=32, groups=2, **kwargs)
    with torch.no_grad():
        for p in layer.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    return layer.eval()


@pytest.mark.parametrize("case", ["pre", "post", "res_post", "ls_post", "ls_pre", "ls_res_post_ignored"])
def test_block_residual_variants_follow_the_reference_table(seeded, case: str) -> None:
    kw = dict(pre={}, post=dict(post_norm=True), res_post=dict(res_post_norm=True),
              ls_post=dict(post_norm=True, layer_scale=0.5), ls_pre=dict(layer_scale=0.5),
              ls_res_post_ignored=dict(layer_scale=0.5, res_post_norm=True))[case]
    layer = _layer(**kw)
    x = torch.randn(2, 5, 6, 32)
    n1, n2, dcn, mlp = layer.norm1, layer.norm2, layer.dcn, layer.mlp
    with torch.no_grad():
        if case == "pre":
            y = x + dcn(n1(x))
            y = y + mlp(n2(y))
        elif case == "post":
            y = x + n1(dcn(x))
            y = y + n2(mlp(y))
        elif case == "res_post":
            y = x + layer.res_post_norm1(dcn(n1(x)))
            y = y + layer.res_post_norm2(mlp(n2(y)))
        elif case == "ls_post":
            y = x + layer.gamma1 * n1(dcn(x))
            y = y + layer.gamma2 * n2(mlp(y))
        else:
            y = x + layer.gamma1 * dcn(n1(x))
            y = y + layer.gamma2 * mlp(n2(y))
        torch.testing.assert_close(layer(x), y)


def test_layer_norm_eps_is_1e_6() -> None:
    with torch.device("meta"):
        model = backbones.create_model("internimage_h")
    eps = {m.eps for m in model.modules() if isinstance(m, torch.nn.LayerNorm)}
    assert eps == {1e-6}


def test_dcn_at_init_averages_the_3x3_window() -> None:
    # docs/backbones.md: zero offsets and uniform 1/9 weights at init
    layer = InternImageLayer(channels=16, groups=1)
    dcn = layer.dcn
    assert torch.count_nonzero(dcn.offset.weight) == 0 and torch.count_nonzero(dcn.mask.bias) == 0
    with torch.no_grad():
        dcn.input_proj.weight.copy_(torch.eye(16))
        dcn.output_proj.weight.copy_(torch.eye(16))
        x = torch.randn(1, 4, 4, 16)
        expected = torch.nn.functional.avg_pool2d(x.permute(0, 3, 1, 2), 3, 1, 1, count_include_pad=True)
        torch.testing.assert_close(dcn(x), expected.permute(0, 2, 3, 1), rtol=1e-5, atol=1e-6)


def test_level2_post_norm_follows_the_listed_blocks(seeded) -> None:
    from backbones.internimage import InternImageBlock

    level = InternImageBlock(channels=32, depth=3, groups=2, downsample=False, post_norm_block_ids=[1]).eval()
    with torch.no_grad():
        for p in level.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    seen = {}
    level.blocks[1].register_forward_hook(lambda m, i, o: seen.__setitem__("block1_out", o))
    level.blocks[2].register_forward_pre_hook(lambda m, i: seen.__setitem__("block2_in", i[0]))
    x = torch.randn(1, 4, 4, 32)
    with torch.no_grad():
        out = level(x)
        torch.testing.assert_close(seen["block2_in"], level.post_norms[0](seen["block1_out"]))
        # stage norm at the end (pre-norm stage: not post_norm)
        torch.testing.assert_close(out, level.norm(level.blocks[2](seen["block2_in"])))


def test_uniform_drop_path() -> None:
    with torch.device("meta"):
        model = backbones.create_backbone("internimage_t", drop_path_rate=0.3, drop_path_type="uniform")
    assert {b.drop_path.drop_prob for lvl in model.levels for b in lvl.blocks} == {0.3}


def test_official_mmdet_style_arguments(tmp_path, tiny_arch) -> None:
    source = backbones.create_backbone("internimage_t", **tiny_arch)
    path = backbones.save_checkpoint(source, tmp_path / "t.safetensors")
    model = backbones.InternImage(core_op="DCNv3", mlp_ratio=4.0, drop_path_rate=0.2, norm_layer="LN",
                                  layer_scale=1.0, offset_scale=1.0, post_norm=False, with_cp=False,
                                  out_indices=(1, 2, 3), init_cfg=dict(type="Pretrained", checkpoint=str(path)),
                                  **tiny_arch)
    assert torch.equal(model.levels[1].blocks[0].mlp.fc1.weight, source.levels[1].blocks[0].mlp.fc1.weight)
    assert torch.equal(model.levels[1].blocks[0].gamma1, torch.ones(64))  # missing gammas -> 1.0
    with pytest.raises(ValueError, match="core_op"):
        backbones.InternImage("t", core_op="DCNv4")
