# BEVFormer v2 on nuScenes at the paper's settings: 1600x640 crops of the 1600x900 images (rows
# 260..900), random rescale in training, BEV augmentation, 8 frames, 24 epochs. Each
# bevformer_v2_internimage_*_nus.py picks the backbone.
_base_ = ["../../_base_/datasets/nuscenes_bev.py", "./bevformer_v2_model.py", "./runtime.py"]

custom_imports = dict(imports=["bev", "perception.data", "perception.evaluation.nuscenes"], allow_failed_imports=False)
crop_size = (1600, 640)
train_pipeline = [
    dict(type="LoadMultiViewImages", num_workers=6),
    dict(type="ResizeCropFlipImage", final_size=crop_size, scale_range=(1.0, 1.2), flip_prob=0.0),
    dict(type="PhotometricAugmentation"),
    dict(type="BEVAugmentation", rotation_range=(-0.3925, 0.3925), scale_range=(0.95, 1.05), flip_x_prob=0.5,
         flip_y_prob=0.5),
    dict(type="ObjectRangeFilter", x_range=(-51.2, 51.2), y_range=(-51.2, 51.2)),
    dict(type="NormalizeMultiViewImages"),
    dict(type="PadMultiViewImages", size_divisor=32),
    dict(type="PackBEVInputs", with_boxes_2d=False),
]
test_pipeline = [
    dict(type="LoadMultiViewImages", num_workers=6),
    dict(type="ResizeCropFlipImage", final_size=crop_size, training=False),
    dict(type="NormalizeMultiViewImages"),
    dict(type="PadMultiViewImages", size_divisor=32),
    dict(type="PackBEVInputs", with_boxes_2d=False),
]
train_dataloader = dict(dataset=dict(pipeline=train_pipeline, num_frames={{_base_.num_frames}}))
val_dataloader = dict(dataset=dict(pipeline=test_pipeline, num_frames={{_base_.num_frames}}))
test_dataloader = val_dataloader
log_processor = dict(by_epoch=True, window_size=50)
