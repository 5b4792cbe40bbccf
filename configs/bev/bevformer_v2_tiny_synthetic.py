# Tiny BEVFormer v2 on the embedded synthetic world (python tools/create_data.py synthetic --out DIR).
# Trains on a 2-core CPU; the README's main job (tools/demo.py) uses it.
_base_ = ["../_base_/datasets/synthetic_bev.py", "./_base_/bevformer_v2_tiny_model.py", "./_base_/runtime.py"]

custom_imports = dict(imports=["bev", "perception.data", "perception.evaluation.nuscenes"], allow_failed_imports=False)
data_root = "data/synthetic/"
bev_range = dict(x_range=(-32.0, 32.0), y_range=(-32.0, 32.0))  # the tiny model's BEV grid

train_pipeline = [
    dict(type="LoadMultiViewImages", num_workers=6),
    dict(type="ResizeCropFlipImage", final_size=(320, 180), scale_range=(0.94, 1.1), flip_prob=0.5),
    dict(type="PhotometricAugmentation", prob=0.5),
    dict(type="BEVAugmentation", rotation_range=(-0.3925, 0.3925), scale_range=(0.95, 1.05)),
    dict(type="ObjectRangeFilter", **bev_range),
    dict(type="NormalizeMultiViewImages"),
    dict(type="PadMultiViewImages", size_divisor=32),
    dict(type="PackBEVInputs", with_boxes_2d=False),
]
train_dataloader = dict(batch_size=2, num_workers=1, persistent_workers=True,
                        dataset=dict(pipeline=train_pipeline, num_frames={{_base_.num_frames}}))
val_dataloader = dict(batch_size=2, num_workers=1, persistent_workers=True,
                      dataset=dict(num_frames={{_base_.num_frames}}))
test_dataloader = val_dataloader
val_evaluator = dict(out_dir="work_dirs/bevformer_v2_tiny_synthetic/nuscenes_eval")
test_evaluator = val_evaluator

# Iteration-based: the demo stops earlier through its time budget (TimeBudgetHook).
optim_wrapper = dict(optimizer=dict(type="AdamW", lr=1e-3, weight_decay=0.01), clip_grad=dict(max_norm=35))
param_scheduler = [dict(type="LinearLR", start_factor=0.1, by_epoch=False, begin=0, end=100)]
train_cfg = dict(_delete_=True, type="IterBasedTrainLoop", max_iters=3000, val_interval=100000)
default_hooks = dict(logger=dict(interval=10),
                     checkpoint=dict(by_epoch=False, interval=200, max_keep_ckpts=1))
log_processor = dict(by_epoch=False, window_size=10)
