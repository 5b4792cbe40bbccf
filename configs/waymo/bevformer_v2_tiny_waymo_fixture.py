# The tiny BEVFormer v2 (configs/bev/_base_/bevformer_v2_tiny_model.py) on the Waymo-format fixture of the
# synthetic world, so the whole Waymo path (reader, infos, training, LET metric) runs on a 2-core CPU:
#   python tools/create_data.py synthetic-waymo --out data/waymo_fixture
#   python tools/create_data.py waymo --root data/waymo_fixture --split training
#   python tools/create_data.py waymo --root data/waymo_fixture --split validation
# Native fixture images (192x128 and 192x89), a 32x32 BEV of 2 m cells over x in [-16, 48] m, y in [-32, 32] m.
_base_ = ["../bev/_base_/bevformer_v2_tiny_model.py", "../bev/_base_/runtime.py", "./_base_/waymo_bev.py"]

data_root = "data/waymo_fixture/"
bev_grid = dict(x_range=(-16.0, 48.0), y_range=(-32.0, 32.0), z_range=(-2.0, 4.0), resolution=2.0)
train_pipeline = [
    dict(type="LoadMultiViewImages", num_workers=5),
    dict(type="BEVAugmentation", rotation_range=(-0.3925, 0.3925), scale_range=(0.95, 1.05)),
    dict(type="PadMultiViewImages", size_divisor=32),
    dict(type="PackBEVInputs"),
]
test_pipeline = [
    dict(type="LoadMultiViewImages", num_workers=5),
    dict(type="PadMultiViewImages", size_divisor=32),
    dict(type="PackBEVInputs"),
]
model = dict(
    bev_grid=bev_grid,
    encoder=dict(num_cameras={{_base_.num_cameras}}),
    head=dict(num_classes=3),
    perspective_head=dict(num_classes=3),
)
train_dataloader = dict(
    batch_size=2, num_workers=1, persistent_workers=True,
    dataset=dict(ann_file=data_root + "waymo_infos_training.pkl", data_root=data_root, pipeline=train_pipeline,
                 num_frames={{_base_.num_frames}}))
val_dataloader = dict(
    batch_size=2, num_workers=1, persistent_workers=True,
    dataset=dict(ann_file=data_root + "waymo_infos_validation.pkl", data_root=data_root, pipeline=test_pipeline,
                 num_frames={{_base_.num_frames}}))
test_dataloader = val_dataloader
val_evaluator = dict(type="WaymoLETMetric", ann_file=data_root + "waymo_infos_validation.pkl",
                     ground_truth=data_root + "validation")
test_evaluator = val_evaluator

optim_wrapper = dict(optimizer=dict(type="AdamW", lr=1e-3, weight_decay=0.01), clip_grad=dict(max_norm=35))
param_scheduler = [dict(type="LinearLR", start_factor=0.1, by_epoch=False, begin=0, end=100)]
train_cfg = dict(_delete_=True, type="IterBasedTrainLoop", max_iters=1000, val_interval=100000)
default_hooks = dict(logger=dict(interval=10), checkpoint=dict(by_epoch=False, interval=200, max_keep_ckpts=1))
log_processor = dict(by_epoch=False, window_size=10)
