# OpenLane-V2 subset_B (nuScenes): 6 cameras of 1600x900, resized by 0.5 and cropped to 800x448 at the
# bottom; lanes, traffic elements and topology, scored by OLS v2.1 (OpenLaneV2Metric, docs/lanes.md).
# Info files: python tools/create_data.py openlane_v2 --root data/OpenLane-V2 --subset B
_base_ = ["./openlane_v2_subset_A.py"]
data_root = "data/OpenLane-V2/"
num_cameras = 6
camera_sizes = (800, 448)
image_scale = 0.5

train_pipeline = [
    dict(type="LoadMultiViewImages", num_workers=6),
    dict(type="ResizeCropFlipImage", final_size=camera_sizes, scale_range=(image_scale, image_scale), flip_prob=0.0),
    dict(type="PhotometricAugmentation"),
    dict(type="PadMultiViewImages", size_divisor=32),
    dict(type="PackBEVInputs"),
]
test_pipeline = [
    dict(type="LoadMultiViewImages", num_workers=6),
    dict(type="ResizeCropFlipImage", final_size=camera_sizes, scale_range=(image_scale, image_scale), training=False),
    dict(type="PadMultiViewImages", size_divisor=32),
    dict(type="PackBEVInputs"),
]
train_dataloader = dict(dataset=dict(ann_file=data_root + "openlane_v2_infos_subset_B_train.pkl",
                                     pipeline=train_pipeline))
val_dataloader = dict(dataset=dict(ann_file=data_root + "openlane_v2_infos_subset_B_val.pkl", pipeline=test_pipeline))
test_dataloader = val_dataloader
lane_evaluator = dict(type="OpenLaneV2Metric", ann_file=data_root + "openlane_v2_infos_subset_B_val.pkl",
                      data_root=data_root, ground_truth="data_dict_subset_B_val.pkl")
val_evaluator = [lane_evaluator]
test_evaluator = val_evaluator
