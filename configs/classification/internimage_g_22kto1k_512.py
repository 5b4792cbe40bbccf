# InternImage-G: IN-22K pre-trained model fine-tuned on ImageNet-1K at 512 (official recipe).
_base_ = ["../_base_/classification/finetune_22kto1k_384.py"]
img_size = 512
train_pipeline = [
    dict(type="LoadImage"),
    dict(type="RandomResizedCrop", size=img_size, interpolation="bicubic"),
    dict(type="RandomFlip", prob=0.5),
    dict(type="RandAugment", num_ops=2, magnitude=9, magnitude_std=0.5),
    dict(type="PackClsInputs"),
]
test_pipeline = [
    dict(type="LoadImage"),
    dict(type="ResizeShorter", size=img_size, interpolation="bicubic"),
    dict(type="CenterCrop", size=img_size),
    dict(type="PackClsInputs"),
]
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))
val_dataloader = dict(dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader
model = dict(backbone=dict(variant="g", drop_path_rate=0.4),
             pretrained=None)  # e.g. "checkpoints/internimage_g_22k_512.pth"
