# nuScenes camera-only BEV detection data (6 cameras, ego frame of the key frame, 10 classes).
# Info files: python tools/create_data.py nuscenes --root data/nuscenes --version v1.0-trainval --out data/nuscenes
# Evaluation: the devkit's DetectionEval (NDS, mAP, TP errors) through NuScenesDetectionMetric.
custom_imports = dict(imports=["perception.data", "perception.evaluation.nuscenes"], allow_failed_imports=False)
data_root = "data/nuscenes/"
data_version = "v1.0-trainval"
image_size = (1600, 900)  # (w, h) network input before padding to a multiple of 32 (-> 1600 x 928)
point_cloud_range = (-51.2, -51.2, -5.0, 51.2, 51.2, 3.0)

train_pipeline = [
    dict(type="LoadMultiViewImages", num_workers=6),
    dict(type="ResizeCropFlipImage", final_size=image_size, scale_range=(0.94, 1.11), flip_prob=0.0),
    dict(type="PhotometricAugmentation"),
    dict(type="BEVAugmentation", rotation_range=(-0.3925, 0.3925), scale_range=(0.95, 1.05), flip_x_prob=0.5,
         flip_y_prob=0.5),
    dict(type="ObjectRangeFilter", x_range=(-51.2, 51.2), y_range=(-51.2, 51.2)),
    dict(type="NormalizeMultiViewImages"),
    dict(type="PadMultiViewImages", size_divisor=32),
    dict(type="PackBEVInputs"),
]
test_pipeline = [
    dict(type="LoadMultiViewImages", num_workers=6),
    dict(type="ResizeCropFlipImage", final_size=image_size, training=False),
    dict(type="NormalizeMultiViewImages"),
    dict(type="PadMultiViewImages", size_divisor=32),
    dict(type="PackBEVInputs", with_boxes_2d=False),
]

train_dataloader = dict(
    batch_size=1, num_workers=4, persistent_workers=True, pin_memory=True,
    sampler=dict(type="DefaultSampler", shuffle=True), collate_fn=dict(type="bev_collate"),
    dataset=dict(type="NuScenesBEVDataset", ann_file=data_root + "nuscenes_infos_train.pkl", data_root=data_root,
                 pipeline=train_pipeline, num_frames=1))
val_dataloader = dict(
    batch_size=1, num_workers=4, persistent_workers=True, pin_memory=True,
    sampler=dict(type="DefaultSampler", shuffle=False), collate_fn=dict(type="bev_collate"),
    dataset=dict(type="NuScenesBEVDataset", ann_file=data_root + "nuscenes_infos_val.pkl", data_root=data_root,
                 pipeline=test_pipeline, num_frames=1, test_mode=True))
test_dataloader = val_dataloader
val_evaluator = dict(type="NuScenesDetectionMetric", ann_file=data_root + "nuscenes_infos_val.pkl",
                     data_root=data_root, version=data_version, out_dir="work_dirs/nuscenes_eval")
test_evaluator = val_evaluator
