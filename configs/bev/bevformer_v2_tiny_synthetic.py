# Tiny BEVFormer v2 on the embedded synthetic world (python tools/create_data.py synthetic --out DIR), with
# the synthetic world's pipeline. Trains on a 2-core CPU; the README's main job (tools/demo.py) uses it.
_base_ = ["../_base_/datasets/synthetic_bev.py", "./_base_/bevformer_v2_tiny_model.py", "./_base_/runtime.py"]

train_dataloader = dict(batch_size=2, num_workers=1, persistent_workers=True,
                        dataset=dict(num_frames={{_base_.num_frames}}))
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
