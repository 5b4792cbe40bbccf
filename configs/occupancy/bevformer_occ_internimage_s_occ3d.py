# BEVFormer-Occ with InternImage-S on Occ3D-nuScenes: the InternImage occupancy baseline (25.1 val mIoU
# published, under 14 GB of training memory): InternImage-S, drop path 0.3, post-norm, gradient
# checkpointing. Backbone weights: backbone.pretrained=PATH (no download at run time).
_base_ = ["./_base_/bevformer_occ_nus.py"]

model = dict(backbone=dict(variant="s", drop_path_rate=0.3, post_norm=True))
optim_wrapper = dict(optimizer=dict(weight_decay=0.05))
