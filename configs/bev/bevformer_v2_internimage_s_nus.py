# BEVFormer v2 with InternImage-S on nuScenes (paper settings, see _base_/bevformer_v2_nus.py).
# Backbone weights: load an official checkpoint with backbone.pretrained=PATH (no download at run time).
_base_ = ["./_base_/bevformer_v2_nus.py"]

model = dict(
    backbone=dict(variant="s", drop_path_rate=0.3),
)
