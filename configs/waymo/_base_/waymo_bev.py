# Waymo Open Dataset v2 camera-only 3D detection data: 5 cameras of two sizes (FRONT, FRONT_LEFT, FRONT_RIGHT
# 1920x1280; SIDE_LEFT, SIDE_RIGHT 1920x886), the vehicle frame of each frame as the ego frame, the challenge's
# classes (vehicle, pedestrian, cyclist). Every camera is resized by 0.5 without a crop; the batch pads the two
# sizes to 960x640. Info files (every 5th training frame, as most camera-only work trains on):
#   python tools/create_data.py waymo --root data/waymo --split training --interval 5
#   python tools/create_data.py waymo --root data/waymo --split validation
# Evaluation: LET-3D-APL / LET-3D-AP at LEVEL_2 against the camera-synced boxes of the v2 validation folder
# (WaymoLETMetric, docs/waymo.md).
custom_imports = dict(imports=["perception.evaluation.waymo_let"], allow_failed_imports=False)
data_root = "data/waymo/"
classes = ["vehicle", "pedestrian", "cyclist"]
num_cameras = 5
image_scale = 0.5
front_size = (960, 640)  # (w, h): half of 1920x1280
side_size = (960, 443)  # half of 1920x886
camera_sizes = dict(FRONT=front_size, FRONT_LEFT=front_size, FRONT_RIGHT=front_size, SIDE_LEFT=side_size,
                    SIDE_RIGHT=side_size)

train_pipeline = [
    dict(type="LoadMultiViewImages", num_workers=5),
    dict(type="ResizeCropFlipImage", final_size=camera_sizes, scale_range=(image_scale, image_scale), flip_prob=0.0),
    dict(type="PhotometricAugmentation"),
    dict(type="BEVAugmentation", rotation_range=(-0.3925, 0.3925), scale_range=(0.95, 1.05)),
    dict(type="PadMultiViewImages", size_divisor=32),
    dict(type="PackBEVInputs"),
]
test_pipeline = [
    dict(type="LoadMultiViewImages", num_workers=5),
    dict(type="ResizeCropFlipImage", final_size=camera_sizes, scale_range=(image_scale, image_scale), training=False),
    dict(type="PadMultiViewImages", size_divisor=32),
    dict(type="PackBEVInputs"),
]
train_dataloader = dict(
    batch_size=1, num_workers=4, persistent_workers=True, pin_memory=True,
    sampler=dict(type="DefaultSampler", shuffle=True), collate_fn=dict(type="bev_collate"),
    dataset=dict(type="BEVDataset", ann_file=data_root + "waymo_infos_training.pkl", data_root=data_root,
                 pipeline=train_pipeline, num_frames=1, classes=classes))
val_dataloader = dict(
    batch_size=1, num_workers=4, persistent_workers=True, pin_memory=True,
    sampler=dict(type="DefaultSampler", shuffle=False), collate_fn=dict(type="bev_collate"),
    dataset=dict(type="BEVDataset", ann_file=data_root + "waymo_infos_validation.pkl", data_root=data_root,
                 pipeline=test_pipeline, num_frames=1, test_mode=True, classes=classes))
test_dataloader = val_dataloader
detection_evaluator = dict(type="WaymoLETMetric", ann_file=data_root + "waymo_infos_validation.pkl",
                           ground_truth=data_root + "validation")
val_evaluator = detection_evaluator
test_evaluator = val_evaluator
