# Fine-tuning an IN-22K pre-trained InternImage on ImageNet-1K (official recipe) at 384; the
# internimage_{l,xl,h,g}_22kto1k_*.py configs set the variant (and H/G their larger input size).
# Set model.pretrained to the 22K checkpoint; its 21841-class head is mapped to 1K with the class map
# (upstream classification/meta_data/map22kto1k.txt).
_base_ = [
    "./default_runtime.py",
    "./imagenet_224.py",
    "./schedule_22kto1k_20e.py",
]
img_size = 384
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
train_dataloader = dict(batch_size=32, dataset=dict(pipeline=train_pipeline))
val_dataloader = dict(batch_size=32, dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader
model = dict(
    type="ImageClassifier",
    backbone=dict(type="InternImageClassifier", variant="l", num_classes=1000, drop_path_rate=0.1, with_cp=True),
    label_smoothing=0.3,
    pretrained=None,  # e.g. "checkpoints/internimage_l_22k_384.pth"
    pretrained_head="map",
    class_map="data/imagenet/meta/map22kto1k.txt")
