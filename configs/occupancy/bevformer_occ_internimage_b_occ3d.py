# BEVFormer-Occ with InternImage-B on Occ3D-nuScenes (the S recipe with the B backbone, drop path 0.4).
# Backbone weights: backbone.pretrained=PATH (no download at run time).
_base_ = ["./_base_/bevformer_occ_nus.py"]

model = dict(backbone=dict(variant="b", drop_path_rate=0.4, post_norm=True))
optim_wrapper = dict(optimizer=dict(weight_decay=0.05))
