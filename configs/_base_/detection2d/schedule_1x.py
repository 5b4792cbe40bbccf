# DINO 1x (official InternImage-T recipe): AdamW lr 1e-4, weight decay 1e-4, layer-wise lr decay 0.9 over the
# 30 backbone layers (the official detection constructor), gradient clip 0.1, 12 epochs with a x0.1 step at
# epoch 11, linear warm-up over 500 iterations from 1e-3 of the rate; batch 16 (8 GPUs x 2).
base_lr = 1e-4
max_epochs = 12
optim_wrapper = dict(
    type="OptimWrapper",
    optimizer=dict(type="AdamW", lr=base_lr, betas=(0.9, 0.999), weight_decay=1e-4),
    constructor="LayerDecayOptimWrapperConstructor",
    paramwise_cfg=dict(mode="detection", layer_decay_rate=0.9, num_layers=30),
    clip_grad=dict(max_norm=0.1, norm_type=2))
param_scheduler = [
    dict(type="LinearLR", start_factor=1e-3, by_epoch=False, begin=0, end=500),
    dict(type="MultiStepLR", by_epoch=True, milestones=[11], gamma=0.1, begin=0, end=max_epochs),
]
train_cfg = dict(type="EpochBasedTrainLoop", max_epochs=max_epochs, val_interval=1)
val_cfg = dict(type="ValLoop")
test_cfg = dict(type="TestLoop")
auto_scale_lr = dict(enable=False, base_batch_size=16)
