"""InternImage architecture: exact parameter counts and official state-dict key names."""

from __future__ import annotations

import pytest
import torch

import backbones

# Published/analytic parameter counts with 1000-class heads (docs/backbones.md).
PARAMS = {"t": 29_918_424, "s": 50_079_880, "b": 97_461_832, "l": 223_334_810, "xl": 334_819_780,
          "h": 1_089_636_760, "g": 3_076_373_352}
# Parameter key counts (docs/backbones.md).
KEY_COUNTS = {"t": 630, "s": 748, "b": 748, "l": 836, "xl": 880, "h": 1357, "g": 1295}


def _meta_model(variant: str, **kwargs) -> torch.nn.Module:
    with torch.device("meta"):
        return backbones.create_model(f"internimage_{variant}", **kwargs)


@pytest.mark.parametrize("variant", list(PARAMS))
def test_parameter_count_is_exact(variant: str) -> None:
    model = _meta_model(variant)
    assert sum(p.numel() for p in model.parameters()) == PARAMS[variant]
    assert len(dict(model.named_parameters())) == KEY_COUNTS[variant]


def test_h_without_head_has_published_size() -> None:
    # docs/backbones.md: H is 1073.1M without the head (the CLIP projector stack + fc_norm + head).
    with torch.device("meta"):
        model = backbones.create_backbone("internimage_h")
    assert round(sum(p.numel() for p in model.parameters()) / 1e6, 1) == 1073.1


def _expected_keys(channels: int, depths, groups, *, layer_scale: bool, stage_norm: bool, res_post_norm: bool,
                   cfs: bool, post_norm_ids=(), clip_head: bool) -> dict[str, tuple]:
    """The checkpoint key pattern (docs/backbones.md) written out by hand, with shapes."""
    c = channels
    keys = {"patch_embed.conv1.weight": (c // 2, 3, 3, 3), "patch_embed.conv1.bias": (c // 2,),
            "patch_embed.norm1.1.weight": (c // 2,), "patch_embed.norm1.1.bias": (c // 2,),
            "patch_embed.conv2.weight": (c, c // 2, 3, 3), "patch_embed.conv2.bias": (c,),
            "patch_embed.norm2.1.weight": (c,), "patch_embed.norm2.1.bias": (c,)}
    dw = 5 if cfs else 3
    for s, depth in enumerate(depths):
        ch, g = c * 2 ** s, groups[s]
        for b in range(depth):
            p = f"levels.{s}.blocks.{b}."
            for n in ("norm1.0", "norm2.0"):
                keys[p + n + ".weight"] = keys[p + n + ".bias"] = (ch,)
            if layer_scale:
                keys[p + "gamma1"] = keys[p + "gamma2"] = (ch,)
            keys[p + "dcn.dw_conv.0.weight"] = (ch, 1, dw, dw)
            keys[p + "dcn.dw_conv.0.bias"] = (ch,)
            keys[p + "dcn.dw_conv.1.1.weight"] = keys[p + "dcn.dw_conv.1.1.bias"] = (ch,)
            keys[p + "dcn.offset.weight"], keys[p + "dcn.offset.bias"] = (g * 18, ch), (g * 18,)
            keys[p + "dcn.mask.weight"], keys[p + "dcn.mask.bias"] = (g * 9, ch), (g * 9,)
            for n in ("input_proj", "output_proj"):
                keys[p + f"dcn.{n}.weight"], keys[p + f"dcn.{n}.bias"] = (ch, ch), (ch,)
            if cfs:
                keys[p + "dcn.center_feature_scale_proj_weight"] = (g, ch)
                keys[p + "dcn.center_feature_scale_proj_bias"] = (g,)
            keys[p + "mlp.fc1.weight"], keys[p + "mlp.fc1.bias"] = (4 * ch, ch), (4 * ch,)
            keys[p + "mlp.fc2.weight"], keys[p + "mlp.fc2.bias"] = (ch, 4 * ch), (ch,)
            if res_post_norm:
                for n in ("res_post_norm1.0", "res_post_norm2.0"):
                    keys[p + n + ".weight"] = keys[p + n + ".bias"] = (ch,)
        if stage_norm:
            keys[f"levels.{s}.norm.0.weight"] = keys[f"levels.{s}.norm.0.bias"] = (ch,)
        if s == 2:
            for t in range(len(post_norm_ids)):
                keys[f"levels.2.post_norms.{t}.0.weight"] = keys[f"levels.2.post_norms.{t}.0.bias"] = (ch,)
        if s < 3:
            keys[f"levels.{s}.downsample.conv.weight"] = (2 * ch, ch, 3, 3)
            keys[f"levels.{s}.downsample.norm.1.weight"] = keys[f"levels.{s}.downsample.norm.1.bias"] = (2 * ch,)
    f = 8 * c
    if clip_head:
        keys.update({"dcnv3_head_x4.0.weight": (4096, f, 1, 1), "dcnv3_head_x4.0.bias": (4096,),
                     "dcnv3_head_x3.weight": (1024, f // 2, 1, 1), "dcnv3_head_x3.bias": (1024,),
                     "clip_projector.cross_dcn.proj.weight": (768, 1024), "clip_projector.cross_dcn.proj.bias": (768,),
                     "fc_norm.0.weight": (768,), "fc_norm.0.bias": (768,),
                     "head.weight": (1000, 768), "head.bias": (1000,)})
        for n in "qkv":
            keys[f"clip_projector.norm1_{n}.0.weight"] = keys[f"clip_projector.norm1_{n}.0.bias"] = (1024,)
            keys[f"clip_projector.cross_dcn.{n}.weight"] = (1024, 1024)
            keys[f"clip_projector.cross_dcn.{n}_bias"] = (1024,)
    else:
        h = f * 3 // 2
        keys.update({"conv_head.0.weight": (h, f, 1, 1), "conv_head.1.0.weight": (h,), "conv_head.1.0.bias": (h,),
                     "conv_head.1.0.running_mean": (h,), "conv_head.1.0.running_var": (h,),
                     "conv_head.1.0.num_batches_tracked": (), "head.weight": (1000, h), "head.bias": (1000,)})
    return keys


EXPECTED = {
    "t": dict(channels=64, depths=(4, 4, 18, 4), groups=(4, 8, 16, 32), layer_scale=False, stage_norm=True,
              res_post_norm=False, cfs=False, clip_head=False),
    "b": dict(channels=112, depths=(4, 4, 21, 4), groups=(7, 14, 28, 56), layer_scale=True, stage_norm=False,
              res_post_norm=False, cfs=False, clip_head=False),
    "h": dict(channels=320, depths=(6, 6, 32, 6), groups=(10, 20, 40, 80), layer_scale=False, stage_norm=True,
              res_post_norm=True, cfs=True, post_norm_ids=(5, 11, 17, 23, 29), clip_head=True),
}


@pytest.mark.parametrize("variant", list(EXPECTED))
def test_state_dict_keys_and_shapes_match_the_official_pattern(variant: str) -> None:
    expected = _expected_keys(**EXPECTED[variant])
    state = _meta_model(variant).state_dict()
    assert sorted(state) == sorted(expected)
    assert {k: tuple(v.shape) for k, v in state.items()} == expected
    bn_buffers = 0 if EXPECTED[variant]["clip_head"] else 3  # running_mean/var, num_batches_tracked
    assert len(state) == KEY_COUNTS[variant] + bn_buffers


def test_stage_norm_rule() -> None:
    # `not post_norm or center_feature_scale`: T, H, G have stage norms, S/B/L/XL do not.
    for variant, has_norm in dict(t=True, s=False, b=False, l=False, xl=False, h=True, g=True).items():
        with torch.device("meta"):
            model = backbones.create_backbone(f"internimage_{variant}")
        assert all(hasattr(level, "norm") == has_norm for level in model.levels), variant


def test_g_post_norms_and_offset_scales() -> None:
    with torch.device("meta"):
        g = backbones.create_backbone("internimage_g")
        l_ = backbones.create_backbone("internimage_l")
    assert g.levels[2].post_norm_block_ids == [5, 11, 17, 23, 29, 35, 41, 47]
    assert not hasattr(g.levels[1], "post_norms")
    assert all(b.dcn.offset_scale == 2.0 for lvl in l_.levels for b in lvl.blocks)
    assert g.levels[0].blocks[0].dcn.dw_conv[0].kernel_size == (5, 5)


def test_drop_path_rates_are_one_linspace() -> None:
    with torch.device("meta"):
        model = backbones.create_backbone("internimage_t", drop_path_rate=0.29)
    rates = [b.drop_path.drop_prob if hasattr(b.drop_path, "drop_prob") else 0.0
             for lvl in model.levels for b in lvl.blocks]
    assert len(rates) == 30
    # linspace(0, 0.29, 30) has step 0.01 exactly
    assert rates == pytest.approx([i * 0.01 for i in range(30)])


def test_unknown_names_are_rejected() -> None:
    with pytest.raises(ValueError, match="internimage_t"):
        backbones.create_model("internimage_q")
    with pytest.raises(TypeError, match="bogus"):
        backbones.InternImage("t", bogus=1)
    with pytest.raises(ValueError, match="channels"):
        backbones.InternImage(None)
