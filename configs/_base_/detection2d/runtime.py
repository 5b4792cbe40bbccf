# Runtime of the 2D detection configs: the classification runtime, keeping the checkpoint of the best COCO AP.
_base_ = ["../classification/default_runtime.py"]
custom_imports = dict(imports=["perception.models.detection2d", "perception.data.coco", "perception.evaluation.coco"],
                      allow_failed_imports=False)
default_hooks = dict(checkpoint=dict(type="CheckpointHook", interval=1, max_keep_ckpts=3, save_best="coco/AP",
                                     rule="greater"))
