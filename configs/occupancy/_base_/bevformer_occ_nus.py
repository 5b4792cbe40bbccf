# Occupancy on Occ3D-nuScenes: the nuScenes pipeline with Occ3D labels (dataset labels=("occupancy",);
# info files with occ_path: python tools/create_data.py nuscenes ... --occ-root DIR), scored by the
# challenge's camera-mask mIoU and RayIoU (OccupancyMetric).
_base_ = ["../../_base_/datasets/nuscenes_bev.py", "./bevformer_occ_model.py", "../../bev/_base_/runtime.py"]

train_dataloader = dict(dataset=dict(num_frames={{_base_.num_frames}}, labels=("occupancy",)))
val_dataloader = dict(dataset=dict(num_frames={{_base_.num_frames}}, labels=("occupancy",)))
test_dataloader = val_dataloader
val_evaluator = [{{_base_.occupancy_evaluator}}]
test_evaluator = val_evaluator
log_processor = dict(by_epoch=True, window_size=50)
