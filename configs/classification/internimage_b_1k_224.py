# InternImage-B on ImageNet-1K from scratch at 224 (official recipe; published top-1 in reference §6.1).
_base_ = [
    "../_base_/classification/default_runtime.py",
    "../_base_/classification/imagenet_224.py",
    "../_base_/classification/schedule_in1k_300e.py",
]
model = dict(
    type="ImageClassifier",
    backbone=dict(type="InternImageClassifier", variant="b", num_classes=1000, drop_path_rate=0.5),
    label_smoothing=0.1,
    batch_augments=dict(mixup_alpha=0.8, cutmix_alpha=1.0, prob=1.0, switch_prob=0.5))
