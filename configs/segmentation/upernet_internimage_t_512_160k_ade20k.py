# UperNet InternImage-T 512x512, 160k iterations on ADE20K (official recipe: 47.9 mIoU single scale, 48.1 multi-scale;
# docs/pretraining_2d.md). 8 GPUs x 2 images (batch 16) with SyncBN:
#   torchrun --nproc_per_node 8 tools/train.py configs/segmentation/upernet_internimage_t_512_160k_ade20k.py \
#       --launcher pytorch --cfg-options model.backbone.pretrained=checkpoints/internimage_t_1k_224.pth
_base_ = [
    "../_base_/segmentation/upernet_internimage.py",
    "../_base_/segmentation/ade20k_512.py",
    "../_base_/segmentation/schedule_160k.py",
    "../_base_/segmentation/runtime.py",
]
model = dict(backbone=dict(variant="t", drop_path_rate=0.2))
sync_bn = "torch"  # the heads' BatchNorms become SyncBatchNorm across GPUs (needs CUDA; docs/distributed.md)
