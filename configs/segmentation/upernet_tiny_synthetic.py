# A tiny UperNet trained on a 2-core CPU on the synthetic ADE20K-format set (python tools/create_data.py synthetic-2d
# --out data/synthetic_2d writes data/synthetic_2d/ade); tools/demo.py --tasks segmentation2d uses it. The recipe's
# pipeline and heads at a small scale: images 320x180, random resize 0.5-2.0, crop 160, a 16-channel InternImage.
_base_ = [
    "../_base_/segmentation/upernet_internimage.py",
    "../_base_/segmentation/ade20k_512.py",
    "../_base_/segmentation/schedule_160k.py",
    "../_base_/segmentation/runtime.py",
]
data_root = "data/synthetic_2d/ade"
crop_size = (160, 160)
image_scale = (320, 180)
num_classes = 17  # len(perception.structures.classes.SEGMENTATION_2D_CLASSES); label PNGs hold index + 1
train_pipeline = [
    dict(type="LoadSegImage"),
    dict(type="LoadSegAnnotations"),
    dict(type="SegRandomResize", scale=image_scale, ratio_range=(0.5, 2.0)),
    dict(type="SegRandomCrop", crop_size=crop_size, cat_max_ratio=0.75),
    dict(type="SegRandomFlip", prob=0.5),
    dict(type="PhotoMetricDistortion"),
    dict(type="PackSegInputs"),
]
test_pipeline = [
    dict(type="LoadSegImage"),
    dict(type="ResizeToMultiple", size_divisor=32),
    dict(type="LoadSegAnnotations"),
    dict(type="PackSegInputs"),
]
dataset = dict(data_root=data_root, classes="SEGMENTATION_2D_CLASSES")
# Loading in the main process: a worker process costs a 2-core CPU more than it saves on 320x180 images.
train_dataloader = dict(batch_size=4, num_workers=0, persistent_workers=False,
                        dataset=dict(dataset, pipeline=train_pipeline))
val_dataloader = dict(batch_size=2, num_workers=0, persistent_workers=False,
                      dataset=dict(dataset, pipeline=test_pipeline))
test_dataloader = val_dataloader

model = dict(
    num_classes=num_classes,
    data_preprocessor=dict(size=crop_size),
    backbone=dict(_delete_=True, type="InternImage", variant="t", channels=16, depths=(1, 1, 2, 1),
                  groups=(1, 2, 4, 8), out_indices=(0, 1, 2, 3), drop_path_rate=0.0),
    decode_head=dict(channels=32, dropout=0.0),
    auxiliary_head=dict(channels=16, dropout=0.0),
)

# Iteration-based for tools/train.py; the demo trains for a time budget instead (TimeBudgetHook).
base_lr = 2e-3
max_iters = 2000
warmup_iters = 50
optim_wrapper = dict(optimizer=dict(lr=base_lr, weight_decay=0.01))
param_scheduler = [
    dict(type="LinearLR", start_factor=0.01, by_epoch=False, begin=0, end=warmup_iters),
    dict(type="PolyLR", eta_min=0.0, power=1.0, by_epoch=False, begin=warmup_iters, end=max_iters),
]
train_cfg = dict(max_iters=max_iters, val_interval=500)
default_hooks = dict(logger=dict(interval=10), checkpoint=dict(interval=500))
log_processor = dict(window_size=10)
env_cfg = dict(cudnn_benchmark=False, dist_cfg=dict(backend="gloo"))
