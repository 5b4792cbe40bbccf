# BEVFormer v2 with InternImage-B on Waymo camera-only 3D detection: the 5 cameras at half resolution, a
# 150x200 BEV of 0.75 m cells over x in [-37.5, 75] m, y in [-75, 75] m (the five cameras look forward and
# sideways; Waymo labels reach 75 m), z in [-2, 4] m (the vehicle frame's origin is near the ground), the
# challenge's 3 classes, 4 frames. Optimisation as the nuScenes recipe (configs/bev/_base_/bevformer_v2_model.py),
# 24 epochs on every 5th training frame. Backbone weights: backbone.pretrained=PATH (no download at run time).
_base_ = ["../bev/_base_/bevformer_v2_model.py", "../bev/_base_/runtime.py", "./_base_/waymo_bev.py"]

bev_grid = dict(x_range=(-37.5, 75.0), y_range=(-75.0, 75.0), z_range=(-2.0, 4.0), resolution=0.75)
num_frames = 4

model = dict(
    bev_grid=bev_grid,
    num_frames=num_frames,
    backbone=dict(variant="b", drop_path_rate=0.4),
    encoder=dict(num_cameras={{_base_.num_cameras}}),
    head=dict(num_classes=3),
    perspective_head=dict(num_classes=3),
)
train_dataloader = dict(dataset=dict(num_frames=num_frames))
val_dataloader = dict(dataset=dict(num_frames=num_frames))
test_dataloader = val_dataloader
log_processor = dict(by_epoch=True, window_size=50)
