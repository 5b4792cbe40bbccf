# BEVFormer v2 on nuScenes at the paper's settings: the nuScenes pipeline (1600x640 crops, random
# rescale, BEV augmentation), 8 frames, 24 epochs. Each bevformer_v2_internimage_*_nus.py picks the backbone.
_base_ = ["../../_base_/datasets/nuscenes_bev.py", "./bevformer_v2_model.py", "./runtime.py"]

train_dataloader = dict(dataset=dict(num_frames={{_base_.num_frames}}))
val_dataloader = dict(dataset=dict(num_frames={{_base_.num_frames}}))
test_dataloader = val_dataloader
log_processor = dict(by_epoch=True, window_size=50)
