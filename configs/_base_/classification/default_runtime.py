# Runtime shared by the classification configs (mmengine Runner).
default_scope = "perception"

default_hooks = dict(
    timer=dict(type="IterTimerHook"),
    logger=dict(type="LoggerHook", interval=50),
    param_scheduler=dict(type="ParamSchedulerHook"),
    checkpoint=dict(type="CheckpointHook", interval=1, max_keep_ckpts=3, save_best="accuracy/top1", rule="greater"),
    sampler_seed=dict(type="DistSamplerSeedHook"),
)
env_cfg = dict(cudnn_benchmark=True, mp_cfg=dict(mp_start_method="fork", opencv_num_threads=0),
               dist_cfg=dict(backend="nccl"))
vis_backends = [dict(type="LocalVisBackend")]  # add dict(type="TensorboardVisBackend") with tensorboard installed
visualizer = dict(type="Visualizer", vis_backends=vis_backends)
log_processor = dict(by_epoch=True, window_size=50)
log_level = "INFO"
load_from = None
resume = False
randomness = dict(seed=0, deterministic=False)
