# IN-22K -> IN-1K fine-tuning (official L/XL/H/G recipe): 20 epochs, 2 warm-up, base LR 2e-5 per 512 images,
# warm-up/min LR 0, layer-wise LR decay 0.9, DCN LR multiplier 0.1, label smoothing 0.3, no mixup/cutmix/erasing,
# EMA 0.9999, gradient checkpointing (set in the model), gradient clipping 5.0.
base_lr = 2e-5
max_epochs = 20
warmup_epochs = 2
optim_wrapper = dict(
    type="OptimWrapper",
    optimizer=dict(type="AdamW", lr=base_lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.05),
    constructor="LayerDecayOptimWrapperConstructor",
    paramwise_cfg=dict(mode="classification", layer_decay=0.9, dcn_lr_mul=0.1),
    clip_grad=dict(max_norm=5.0))
param_scheduler = [
    dict(type="LinearLR", start_factor=1e-8, end_factor=1.0, by_epoch=True, begin=0, end=warmup_epochs,
         convert_to_iter_based=True),
    dict(type="CosineAnnealingLR", T_max=max_epochs - warmup_epochs, eta_min=0.0, by_epoch=True,
         begin=warmup_epochs, end=max_epochs, convert_to_iter_based=True),
]
train_cfg = dict(type="EpochBasedTrainLoop", max_epochs=max_epochs, val_interval=1)
val_cfg = dict(type="ValLoop")
test_cfg = dict(type="TestLoop")
auto_scale_lr = dict(enable=True, base_batch_size=512)
custom_hooks = [dict(type="EMAHook", ema_type="ExponentialMovingAverage", momentum=1e-4, priority="ABOVE_NORMAL")]
