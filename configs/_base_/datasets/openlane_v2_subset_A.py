# OpenLane-V2 subset_A (Argoverse 2): 7 ring cameras, the front one portrait (1550x2048, w x h) and six
# landscape (2048x1550), lanes, traffic elements and topology (dataset labels=("lanes",)), scored by OLS
# v2.1 against the devkit's data_dict (OpenLaneV2Metric). Every camera is resized by 0.5 without a crop, so
# the front camera keeps its traffic lights; the batch pads the mixed sizes to 1024x1024 (docs/lanes.md).
# Info files: python tools/create_data.py openlane_v2 --root data/OpenLane-V2 --subset A
data_root = "data/OpenLane-V2/"
num_cameras = 7
front_size = (775, 1024)  # (w, h): half of 1550x2048
side_size = (1024, 775)
image_scale = 0.5  # the front (reference) camera's resize factor; the others follow in proportion
camera_sizes = dict(ring_front_center=front_size, ring_front_left=side_size, ring_front_right=side_size,
                    ring_rear_left=side_size, ring_rear_right=side_size, ring_side_left=side_size,
                    ring_side_right=side_size)

train_pipeline = [
    dict(type="LoadMultiViewImages", num_workers=7),
    dict(type="ResizeCropFlipImage", final_size=camera_sizes, scale_range=(image_scale, image_scale), flip_prob=0.0),
    dict(type="PhotometricAugmentation"),
    dict(type="PadMultiViewImages", size_divisor=32),
    dict(type="PackBEVInputs"),
]
test_pipeline = [
    dict(type="LoadMultiViewImages", num_workers=7),
    dict(type="ResizeCropFlipImage", final_size=camera_sizes, scale_range=(image_scale, image_scale), training=False),
    dict(type="PadMultiViewImages", size_divisor=32),
    dict(type="PackBEVInputs"),
]
train_dataloader = dict(
    batch_size=1, num_workers=4, persistent_workers=True, pin_memory=True,
    sampler=dict(type="DefaultSampler", shuffle=True), collate_fn=dict(type="bev_collate"),
    dataset=dict(type="BEVDataset", ann_file=data_root + "openlane_v2_infos_subset_A_train.pkl", data_root=data_root,
                 pipeline=train_pipeline, num_frames=1, labels=("lanes",)))
val_dataloader = dict(
    batch_size=1, num_workers=4, persistent_workers=True, pin_memory=True,
    sampler=dict(type="DefaultSampler", shuffle=False), collate_fn=dict(type="bev_collate"),
    dataset=dict(type="BEVDataset", ann_file=data_root + "openlane_v2_infos_subset_A_val.pkl", data_root=data_root,
                 pipeline=test_pipeline, num_frames=1, test_mode=True, labels=("lanes",)))
test_dataloader = val_dataloader
lane_evaluator = dict(type="OpenLaneV2Metric", ann_file=data_root + "openlane_v2_infos_subset_A_val.pkl",
                      data_root=data_root, ground_truth="data_dict_subset_A_val.pkl")
val_evaluator = [lane_evaluator]
test_evaluator = val_evaluator
