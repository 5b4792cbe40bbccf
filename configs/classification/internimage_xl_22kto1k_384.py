# InternImage-XL: IN-22K pre-trained model fine-tuned on ImageNet-1K at 384 (official recipe).
_base_ = ["../_base_/classification/finetune_22kto1k_384.py"]
model = dict(backbone=dict(variant="xl", drop_path_rate=0.2),
             pretrained=None)  # e.g. "checkpoints/internimage_xl_22k_384.pth"
