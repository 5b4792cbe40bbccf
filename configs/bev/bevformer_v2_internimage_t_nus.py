# BEVFormer v2 with InternImage-T on nuScenes (paper settings, see _base_/bevformer_v2_nus.py).
# Backbone weights: load an official checkpoint with backbone.pretrained=PATH (no download at run time).
_base_ = ["./_base_/bevformer_v2_nus.py"]

model = dict(
    backbone=dict(variant="t", layer_scale=1.0, drop_path_rate=0.2, out_indices=(1, 2, 3), with_cp=True),
    neck=dict(in_channels=[128, 256, 512]),
)
