# BEVFormer v2 model at the paper's settings: 200x200 BEV over +-51.2 m (the one BEV range: the encoder
# and the detection head take it from bev_grid), 6-layer encoder with 4
# pillar heights x 2 points, 900 queries x 11 Group-DETR groups, FCOS3D-style perspective head on
# 5 FPN levels (strides 8..128), 8 frames fused by residual conv blocks. The backbone is set per
# variant (configs/bev/bevformer_v2_internimage_*.py); the FPN takes its input channels from it.
bev_grid = dict(x_range=(-51.2, 51.2), y_range=(-51.2, 51.2), z_range=(-5.0, 3.0), resolution=0.512)
embed_dims = 256
num_frames = 8

model = dict(
    type="BEVFormerV2",
    bev_grid=bev_grid,
    num_frames=num_frames,
    fusion_channels=512,
    hybrid_queries=0,  # two-stage hybrid queries: set to e.g. 300 to enable
    bev_levels=4,
    backbone=dict(type="InternImage", variant="b", out_indices=(1, 2, 3), layer_scale=1.0, drop_path_rate=0.4,
                  with_cp=True, frozen_stages=-1),
    neck=dict(type="FPN", out_channels=embed_dims, num_outs=5, start_level=0),
    encoder=dict(type="BEVEncoder", embed_dims=embed_dims, num_layers=6, num_heads=8, num_levels=4, num_cameras=6,
                 pillar_heights=4, points_per_height=2, ffn_dims=512, dropout=0.1),
    head=dict(type="BEVDetectionHead", num_classes=10, embed_dims=embed_dims, num_queries=900, num_layers=6,
              num_heads=8, ffn_dims=512, num_points=4, dropout=0.1, group_detr=11, cls_weight=2.0,
              reg_weight=0.75, reg_beta=1.0, max_detections=300),
    perspective_head=dict(type="PerspectiveHead", num_classes=10, in_channels=embed_dims,
                          strides=(8, 16, 32, 64, 128), size_ranges=(-1, 64, 128, 256, 512, 1e8), loss_weight=1.0),
)

# Optimisation (v2 recipe): AdamW 4e-4, weight decay 0.01, backbone lr x0.5, gradient clip 35,
# 2000 warm-up iterations, step decay at epoch 20 of 24.
optim_wrapper = dict(
    type="OptimWrapper",
    optimizer=dict(type="AdamW", lr=4e-4, weight_decay=0.01),
    paramwise_cfg=dict(custom_keys={"backbone": dict(lr_mult=0.5)}),
    clip_grad=dict(max_norm=35, norm_type=2),
)
max_epochs = 24
param_scheduler = [
    dict(type="LinearLR", start_factor=1.0 / 3, by_epoch=False, begin=0, end=2000),
    dict(type="MultiStepLR", by_epoch=True, milestones=[20], gamma=0.1, begin=0, end=max_epochs),
]
train_cfg = dict(type="EpochBasedTrainLoop", max_epochs=max_epochs, val_interval=max_epochs)
