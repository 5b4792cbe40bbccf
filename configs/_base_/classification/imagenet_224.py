# ImageNet-1K, official InternImage recipe (timm create_transform): RandomResizedCrop (bicubic), flip,
# RandAugment rand-m9-mstd0.5-inc1, random erasing 0.25; eval: shorter side 1.0 x size, centre crop.
# Expected layout: data/imagenet/{train,val}/<wnid>/*.JPEG (or use FileListDataset with train.txt/val.txt).
img_size = 224
data_root = "data/imagenet"

train_pipeline = [
    dict(type="LoadImage"),
    dict(type="RandomResizedCrop", size=img_size, interpolation="bicubic"),
    dict(type="RandomFlip", prob=0.5),
    dict(type="RandAugment", num_ops=2, magnitude=9, magnitude_std=0.5),
    dict(type="PackClsInputs"),
    dict(type="RandomErasing", prob=0.25),
]
test_pipeline = [
    dict(type="LoadImage"),
    dict(type="ResizeShorter", size=img_size, interpolation="bicubic"),
    dict(type="CenterCrop", size=img_size),
    dict(type="PackClsInputs"),
]

train_dataloader = dict(
    batch_size=128, num_workers=8, persistent_workers=True, pin_memory=True,
    sampler=dict(type="DefaultSampler", shuffle=True), collate_fn=dict(type="default_collate"),
    dataset=dict(type="ImageFolderDataset", data_root=data_root + "/train", pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=128, num_workers=8, persistent_workers=True, pin_memory=True,
    sampler=dict(type="DefaultSampler", shuffle=False), collate_fn=dict(type="default_collate"),
    dataset=dict(type="ImageFolderDataset", data_root=data_root + "/val", pipeline=test_pipeline, test_mode=True))
test_dataloader = val_dataloader
val_evaluator = dict(type="TopKAccuracy", topk=(1, 5))
test_evaluator = val_evaluator
