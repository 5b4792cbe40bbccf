# The BEVFormer v2 model base with BEVFormer's (v1) schedule, which the occupancy (BEVFormer-Occ) and lane
# (TopoNet) baselines train with: AdamW 2e-4 (backbone x0.1), cosine decay with 500 warm-up iterations,
# 24 epochs.
_base_ = ["./bevformer_v2_model.py"]

optim_wrapper = dict(optimizer=dict(lr=2e-4, weight_decay=0.01),
                     paramwise_cfg=dict(custom_keys={"backbone": dict(lr_mult=0.1)}))
param_scheduler = [
    dict(type="LinearLR", start_factor=1.0 / 3, by_epoch=False, begin=0, end=500),
    dict(type="CosineAnnealingLR", by_epoch=True, begin=0, end={{_base_.max_epochs}}, T_max={{_base_.max_epochs}},
         eta_min_ratio=1e-3),
]
