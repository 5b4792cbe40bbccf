# A DINO small enough to train on a 2-core CPU in minutes (tools/demo.py --tasks detection2d) on the synthetic
# COCO set (tools/create_data.py synthetic-2d --out data/synthetic_2d): a 16-channel InternImage, 64 dims,
# 2 encoder + 3 decoder layers, 100 queries, 30 denoising queries, images at their native 320x180 with
# a light multi-scale resize and no crop. The recipe's structure and loss weights stay as in the 1x config.
_base_ = [
    "../_base_/detection2d/runtime.py",
    "../_base_/detection2d/dino_4scale.py",
    "../_base_/detection2d/schedule_1x.py",
]
data_root = "data/synthetic_2d/coco"
embed_dims = 64
model = dict(
    num_classes=10,
    backbone=dict(_delete_=True, type="InternImage", variant="t", channels=16, depths=(1, 1, 2, 1),
                  groups=(1, 2, 4, 8), out_indices=(1, 2, 3), drop_path_rate=0.0),
    embed_dims=embed_dims, num_queries=100, encoder_layers=2, decoder_layers=3, num_heads=4, ffn_dims=128,
    num_points=4, num_denoising_queries=30, max_detections=100)

dataset = dict(type="CocoDetection", max_size=400, crop_prob=0.0)
train_dataloader = dict(
    batch_size=2, num_workers=0, sampler=dict(type="DefaultSampler", shuffle=True),
    collate_fn=dict(type="coco_collate"),
    dataset=dict(dataset, ann_file=f"{data_root}/annotations/instances_train.json", img_dir=f"{data_root}/train",
                 train=True, scales=(160, 176, 180, 192, 208)))
val_dataloader = dict(
    batch_size=2, num_workers=0, sampler=dict(type="DefaultSampler", shuffle=False),
    collate_fn=dict(type="coco_collate"),
    dataset=dict(dataset, ann_file=f"{data_root}/annotations/instances_val.json", img_dir=f"{data_root}/val",
                 test_mode=True, test_scale=180))
test_dataloader = val_dataloader
val_evaluator = dict(type="CocoBoxMetric", ann_file=f"{data_root}/annotations/instances_val.json")
test_evaluator = val_evaluator

base_lr = 4e-4
max_iters = 3000  # iterations, so that a time budget (tools/demo.py) can stop it at any iteration
optim_wrapper = dict(optimizer=dict(lr=base_lr), paramwise_cfg=dict(layer_decay_rate=1.0, num_layers=None),
                     clip_grad=dict(max_norm=1.0))
param_scheduler = [
    dict(type="LinearLR", start_factor=1e-2, by_epoch=False, begin=0, end=50),
    dict(type="MultiStepLR", by_epoch=False, milestones=[2500], gamma=0.1, begin=0, end=max_iters),
]
train_cfg = dict(_delete_=True, type="IterBasedTrainLoop", max_iters=max_iters, val_interval=max_iters)
default_hooks = dict(logger=dict(type="LoggerHook", interval=10),
                     checkpoint=dict(type="CheckpointHook", by_epoch=False, interval=500, max_keep_ckpts=1,
                                     save_best=None))
log_processor = dict(by_epoch=False, window_size=10)
env_cfg = dict(cudnn_benchmark=False, dist_cfg=dict(backend="gloo"))
