# A COCO-format detection set with the DETR augmentation (flip; multi-scale resize 480-800 short side, long
# side <= 1333, or resize 400-600 + random crop 384-600 + the multi-scale resize); test at short side 800.
data_root = "data/coco"
train_dataset = dict(type="CocoDetection", ann_file=f"{data_root}/annotations/instances_train2017.json",
                     img_dir=f"{data_root}/train2017", train=True, filter_empty=True,
                     scales=tuple(range(480, 801, 32)), max_size=1333, crop_scales=(400, 500, 600),
                     crop_size=(384, 600))
val_dataset = dict(type="CocoDetection", ann_file=f"{data_root}/annotations/instances_val2017.json",
                   img_dir=f"{data_root}/val2017", test_mode=True, test_scale=800, max_size=1333)
train_dataloader = dict(batch_size=2, num_workers=2, persistent_workers=True,
                        sampler=dict(type="DefaultSampler", shuffle=True), collate_fn=dict(type="coco_collate"),
                        dataset=train_dataset)
val_dataloader = dict(batch_size=1, num_workers=2, persistent_workers=True,
                      sampler=dict(type="DefaultSampler", shuffle=False), collate_fn=dict(type="coco_collate"),
                      dataset=val_dataset)
test_dataloader = val_dataloader
val_evaluator = dict(type="CocoBoxMetric", ann_file=f"{data_root}/annotations/instances_val2017.json")
test_evaluator = val_evaluator
