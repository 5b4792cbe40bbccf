# A small InternImage trained on CPU on the embedded procedural shapes set (8 classes, generated under
# data/shapes on first use, or with tools/create_classification_data.py). Chance top-1 is 12.5%; this config
# reaches about 70% top-1 (EMA weights) in under a minute on 2 CPU cores.
#   python tools/train.py configs/classification/internimage_tiny_shapes.py
_base_ = ["../_base_/classification/default_runtime.py"]

data_root = "data/shapes"
img_size = 32
train_pipeline = [
    dict(type="LoadImage"),
    dict(type="RandomResizedCrop", size=img_size, scale=(0.35, 1.0), interpolation="bicubic"),
    dict(type="RandomFlip", prob=0.5),
    dict(type="PackClsInputs"),
]
test_pipeline = [
    dict(type="LoadImage"),
    dict(type="ResizeShorter", size=img_size, interpolation="bicubic"),
    dict(type="CenterCrop", size=img_size),
    dict(type="PackClsInputs"),
]
shapes = dict(type="ShapesDataset", data_root=data_root, train_per_class=60, val_per_class=20, image_size=64)
train_dataloader = dict(
    batch_size=32, num_workers=0, sampler=dict(type="DefaultSampler", shuffle=True),
    collate_fn=dict(type="default_collate"), dataset=dict(shapes, split="train", pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=64, num_workers=0, sampler=dict(type="DefaultSampler", shuffle=False),
    collate_fn=dict(type="default_collate"),
    dataset=dict(shapes, split="val", pipeline=test_pipeline, test_mode=True))
test_dataloader = val_dataloader
val_evaluator = dict(type="TopKAccuracy", topk=(1, 5))
test_evaluator = val_evaluator

model = dict(
    type="ImageClassifier",
    backbone=dict(type="InternImageClassifier", variant="t", channels=32, depths=(1, 1, 2, 1), groups=(2, 4, 8, 16),
                  num_classes=8, drop_path_rate=0.0),
    label_smoothing=0.1)

base_lr = 2e-3
max_epochs = 50
optim_wrapper = dict(
    type="OptimWrapper",
    optimizer=dict(type="AdamW", lr=base_lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.05),
    constructor="LayerDecayOptimWrapperConstructor",
    paramwise_cfg=dict(mode="classification", layer_decay=None),
    clip_grad=dict(max_norm=5.0))
param_scheduler = [
    dict(type="LinearLR", start_factor=0.01, by_epoch=True, begin=0, end=1, convert_to_iter_based=True),
    dict(type="CosineAnnealingLR", T_max=max_epochs - 1, eta_min_ratio=0.01, by_epoch=True, begin=1,
         end=max_epochs, convert_to_iter_based=True),
]
train_cfg = dict(type="EpochBasedTrainLoop", max_epochs=max_epochs, val_interval=max_epochs)
val_cfg = dict(type="ValLoop")
test_cfg = dict(type="TestLoop")
custom_hooks = [dict(type="EMAHook", ema_type="ExponentialMovingAverage", momentum=0.01, priority="ABOVE_NORMAL")]
default_hooks = dict(logger=dict(type="LoggerHook", interval=5),
                     checkpoint=dict(type="CheckpointHook", interval=max_epochs, max_keep_ckpts=1, save_best=None))
env_cfg = dict(cudnn_benchmark=False, dist_cfg=dict(backend="gloo"))
