# ADE20K at 512x512 (official mmseg pipeline): random resize 0.5-2.0 of (2048, 512), random crop 512 with
# cat_max_ratio 0.75, flip, photometric distortion; test: keep-ratio resize to (2048, 512) then to multiples of
# 32, labels kept at the original size. Layout: data/ade/ADEChallengeData2016/{images,annotations}/{training,
# validation}. Batch 16 = 8 GPUs x 2.
data_root = "data/ade/ADEChallengeData2016"
crop_size = (512, 512)
image_scale = (2048, 512)
reduce_zero_label = True
train_pipeline = [
    dict(type="LoadSegImage"),
    dict(type="LoadSegAnnotations"),
    dict(type="SegRandomResize", scale=image_scale, ratio_range=(0.5, 2.0)),
    dict(type="SegRandomCrop", crop_size=crop_size, cat_max_ratio=0.75),
    dict(type="SegRandomFlip", prob=0.5),
    dict(type="PhotoMetricDistortion"),
    dict(type="PackSegInputs"),
]
test_pipeline = [
    dict(type="LoadSegImage"),
    dict(type="SegResize", scale=image_scale),
    dict(type="ResizeToMultiple", size_divisor=32),
    dict(type="LoadSegAnnotations"),  # after the resize: the metric scores labels at the original size
    dict(type="PackSegInputs"),
]
dataset = dict(type="ADE20KDataset", data_root=data_root, reduce_zero_label=reduce_zero_label)
train_dataloader = dict(
    batch_size=2, num_workers=4, persistent_workers=True, sampler=dict(type="InfiniteSampler", shuffle=True),
    collate_fn=dict(type="seg_collate"), dataset=dict(dataset, split="training", pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=1, num_workers=4, persistent_workers=True, sampler=dict(type="DefaultSampler", shuffle=False),
    collate_fn=dict(type="seg_collate"),
    dataset=dict(dataset, split="validation", pipeline=test_pipeline, test_mode=True))
test_dataloader = val_dataloader
val_evaluator = dict(type="SegmentationMetric")
test_evaluator = val_evaluator
