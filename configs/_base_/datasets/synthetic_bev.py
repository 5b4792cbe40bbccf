# The embedded synthetic world in nuScenes format (v1.0-mini scene names; eval split mini_val), 320x180
# images, and its one pipeline. Generate it: python tools/create_data.py synthetic --out data/synthetic
# (~1 min on 2 cores, 5 x 20 frames). It also carries Occ3D and OpenLane-V2 labels: dataset
# labels=("boxes", "occupancy", "lanes"); lanes are scored by OLS v2.1 against its data_dict.
_base_ = ["./nuscenes_bev.py"]
data_root = "data/synthetic/"
data_version = "v1.0-mini"
image_size = (320, 180)  # (w, h), the world's native size

train_pipeline = [
    dict(type="LoadMultiViewImages", num_workers=6),
    dict(type="ResizeCropFlipImage", final_size=image_size, scale_range=(0.94, 1.1), flip_prob=0.5),
    dict(type="PhotometricAugmentation", prob=0.5),
    # No mirrors: the world's vehicles look alike front and back, and a mirror turns its right-hand traffic
    # into left-hand, erasing their only heading cue; a half turn keeps it (docs/bev.md, "The three-head
    # demo's model").
    dict(type="BEVAugmentation", rotation_range=(-0.3925, 0.3925), scale_range=(0.95, 1.05), flip_x_prob=0.0,
         flip_y_prob=0.0, half_turn_prob=0.5),
    dict(type="PadMultiViewImages", size_divisor=32),
    dict(type="PackBEVInputs"),
]
test_pipeline = [
    dict(type="LoadMultiViewImages", num_workers=6),
    dict(type="PadMultiViewImages", size_divisor=32),
    dict(type="PackBEVInputs"),
]
train_dataloader = dict(
    batch_size=2, num_workers=2, persistent_workers=False,
    dataset=dict(ann_file=data_root + "nuscenes_infos_train.pkl", data_root=data_root, pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=2, num_workers=2, persistent_workers=False,
    dataset=dict(ann_file=data_root + "nuscenes_infos_val.pkl", data_root=data_root, pipeline=test_pipeline))
test_dataloader = val_dataloader
detection_evaluator = dict(ann_file=data_root + "nuscenes_infos_val.pkl", data_root=data_root, version=data_version,
                           eval_set="mini_val")
occupancy_evaluator = dict(ann_file=data_root + "nuscenes_infos_val.pkl", data_root=data_root)
lane_evaluator = dict(type="OpenLaneV2Metric", ann_file=data_root + "nuscenes_infos_val.pkl", data_root=data_root,
                      ground_truth="openlane_v2/data_dict_synthetic_val.pkl")
val_evaluator = detection_evaluator
test_evaluator = val_evaluator
