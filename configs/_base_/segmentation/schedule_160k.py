# UperNet InternImage-T schedule (official): AdamW lr 6e-5, betas (0.9, 0.999), weight decay 0.05 (none on norms,
# biases and 1-D parameters), layer decay 1.0; linear warm-up over 1,500 iterations from 1e-6 of the rate (mmcv's
# warmup_ratio), then poly (power 1) to 0 at 160k iterations; validation and checkpoints every 16k.
base_lr = 6e-5
max_iters = 160000
warmup_iters = 1500
optim_wrapper = dict(
    type="OptimWrapper",
    optimizer=dict(type="AdamW", lr=base_lr, betas=(0.9, 0.999), weight_decay=0.05),
    constructor="LayerDecayOptimWrapperConstructor",
    paramwise_cfg=dict(mode="detection", layer_decay_rate=1.0, num_layers=30))
param_scheduler = [
    dict(type="LinearLR", start_factor=1e-6, by_epoch=False, begin=0, end=warmup_iters),
    dict(type="PolyLR", eta_min=0.0, power=1.0, by_epoch=False, begin=warmup_iters, end=max_iters),
]
train_cfg = dict(type="IterBasedTrainLoop", max_iters=max_iters, val_interval=16000)
val_cfg = dict(type="ValLoop")
test_cfg = dict(type="TestLoop")
