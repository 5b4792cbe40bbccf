# ImageNet-1K from scratch at 224 (official recipe); internimage_{t,s,b}_1k_224.py set the variant
# and its drop-path rate.
_base_ = [
    "./default_runtime.py",
    "./imagenet_224.py",
    "./schedule_in1k_300e.py",
]
model = dict(
    type="ImageClassifier",
    backbone=dict(type="InternImageClassifier", variant="t", num_classes=1000, drop_path_rate=0.1),
    label_smoothing=0.1,
    batch_augments=dict(mixup_alpha=0.8, cutmix_alpha=1.0, prob=1.0, switch_prob=0.5))
