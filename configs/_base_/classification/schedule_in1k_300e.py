# IN-1K from scratch (official defaults): AdamW (0.9, 0.999) eps 1e-8, wd 0.05, base LR 5e-4 per 512 images
# (auto-scaled to the real total batch), 300 epochs, 20 warm-up epochs from 5e-7, cosine to 5e-6, per iteration,
# gradient clipping 5.0, label smoothing 0.1, mixup 0.8 / cutmix 1.0, EMA 0.9999.
base_lr = 5e-4
max_epochs = 300
warmup_epochs = 20
optim_wrapper = dict(
    type="OptimWrapper",
    optimizer=dict(type="AdamW", lr=base_lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.05),
    constructor="LayerDecayOptimWrapperConstructor",
    paramwise_cfg=dict(mode="classification", layer_decay=None),  # wd 0 for 1-D params and biases
    clip_grad=dict(max_norm=5.0))
param_scheduler = [
    dict(type="LinearLR", start_factor=5e-7 / base_lr, end_factor=1.0, by_epoch=True, begin=0, end=warmup_epochs,
         convert_to_iter_based=True),
    dict(type="CosineAnnealingLR", T_max=max_epochs - warmup_epochs, eta_min_ratio=5e-6 / base_lr, by_epoch=True,
         begin=warmup_epochs, end=max_epochs, convert_to_iter_based=True),
]
train_cfg = dict(type="EpochBasedTrainLoop", max_epochs=max_epochs, val_interval=1)
val_cfg = dict(type="ValLoop")
test_cfg = dict(type="TestLoop")
auto_scale_lr = dict(enable=True, base_batch_size=512)
custom_hooks = [dict(type="EMAHook", ema_type="ExponentialMovingAverage", momentum=1e-4, priority="ABOVE_NORMAL")]
