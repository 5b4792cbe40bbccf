# nuScenes camera-only BEV data: 6 cameras, ego frame of the key frame, 10 detection classes; the one
# nuScenes pipeline (BEVFormer v2 settings: 1600x640 crops of the 1600x900 images, rows 260..900, random
# rescale in training, BEV augmentation). Boxes outside a model's BEV grid are dropped by its detection
# head, so the pipeline does not restate the range. Extra labels: dataset labels=("boxes", "occupancy", ...).
# Info files: python tools/create_data.py nuscenes --root data/nuscenes --version v1.0-trainval --out data/nuscenes
# Evaluation: the devkit's DetectionEval (NDS, mAP, TP errors) through NuScenesDetectionMetric.
data_root = "data/nuscenes/"
data_version = "v1.0-trainval"
crop_size = (1600, 640)  # (w, h) network input (a multiple of 32, so nothing is padded)
# Images leave the loader as uint8 RGB: the BEV model normalises them on its device (model img_norm,
# ImageNet statistics by default: perception/structures/image_norm.py; docs/data.md "Loader speed").

train_pipeline = [
    dict(type="LoadMultiViewImages", num_workers=6),
    dict(type="ResizeCropFlipImage", final_size=crop_size, scale_range=(1.0, 1.2), flip_prob=0.0),
    dict(type="PhotometricAugmentation"),
    dict(type="BEVAugmentation", rotation_range=(-0.3925, 0.3925), scale_range=(0.95, 1.05), flip_x_prob=0.5,
         flip_y_prob=0.5),
    dict(type="PadMultiViewImages", size_divisor=32),
    dict(type="PackBEVInputs"),
]
test_pipeline = [
    dict(type="LoadMultiViewImages", num_workers=6),
    dict(type="ResizeCropFlipImage", final_size=crop_size, training=False),
    dict(type="PadMultiViewImages", size_divisor=32),
    dict(type="PackBEVInputs"),
]

train_dataloader = dict(
    batch_size=1, num_workers=4, persistent_workers=True, pin_memory=True,
    sampler=dict(type="DefaultSampler", shuffle=True), collate_fn=dict(type="bev_collate"),
    dataset=dict(type="BEVDataset", ann_file=data_root + "nuscenes_infos_train.pkl", data_root=data_root,
                 pipeline=train_pipeline, num_frames=1))
val_dataloader = dict(
    batch_size=1, num_workers=4, persistent_workers=True, pin_memory=True,
    sampler=dict(type="DefaultSampler", shuffle=False), collate_fn=dict(type="bev_collate"),
    dataset=dict(type="BEVDataset", ann_file=data_root + "nuscenes_infos_val.pkl", data_root=data_root,
                 pipeline=test_pipeline, num_frames=1, test_mode=True))
test_dataloader = val_dataloader
# The metrics a task config picks from (val_evaluator = [...] for several heads).
detection_evaluator = dict(type="NuScenesDetectionMetric", ann_file=data_root + "nuscenes_infos_val.pkl",
                           data_root=data_root, version=data_version, out_dir="work_dirs/nuscenes_eval")
occupancy_evaluator = dict(type="OccupancyMetric", ann_file=data_root + "nuscenes_infos_val.pkl", data_root=data_root)
val_evaluator = detection_evaluator
test_evaluator = val_evaluator
