# InternImage-S on ImageNet-1K from scratch at 224 (official recipe; published top-1 in docs/backbones.md).
_base_ = ["../_base_/classification/in1k_224.py"]
model = dict(backbone=dict(variant="s", drop_path_rate=0.4))
