# DINO-4scale InternImage-T 1x on COCO (official recipe: 53.9 box AP, docs/pretraining_2d.md). Start the
# backbone from ImageNet weights with model.backbone.pretrained=PATH (or load_from a full checkpoint).
#   torchrun --nproc_per_node 8 tools/train.py configs/detection2d/dino_4scale_internimage_t_1x_coco.py
_base_ = [
    "../_base_/detection2d/runtime.py",
    "../_base_/detection2d/dino_4scale.py",
    "../_base_/detection2d/coco_detection.py",
    "../_base_/detection2d/schedule_1x.py",
]
