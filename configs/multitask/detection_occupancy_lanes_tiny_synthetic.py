# Detection, occupancy and lane topology on one tiny spine, on the embedded synthetic world (tools/demo.py
# --tasks detection,occupancy,lanes, README command 1): the tiny detector's heads, the tiny occupancy head and
# the tiny lane head on the detection+occupancy config's 32x32 BEV of 2.5 m over the Occ3D range (+-40 m).
# Measured choices (docs/bev.md, "The three-head demo's model"): the detection head reads only the central
# +-30 m of the BEV (its window) and keeps the perspective head's two-stage hybrid queries; its losses count
# twice and the lane head's half, because the lane head's gradients pulled hardest on the shared backbone.
_base_ = ["./detection_occupancy_tiny_synthetic.py", "../lanes/_base_/tiny_lane_head.py"]

detection_window = dict(x_range=(-30.0, 30.0), y_range=(-30.0, 30.0))  # 24x24 of the spine's 32x32 cells

model = dict(
    loss_weights=dict(detection=2.0, lanes=0.5),
    heads=dict(detection=dict(window=detection_window), lanes={{_base_.tiny_lane_head}}))
train_dataloader = dict(dataset=dict(labels=("boxes", "occupancy", "lanes")))
val_dataloader = dict(dataset=dict(labels=("boxes", "occupancy", "lanes")))
test_dataloader = val_dataloader
val_evaluator = [{{_base_.detection_evaluator}}, {{_base_.occupancy_evaluator}}, {{_base_.lane_evaluator}}]
test_evaluator = val_evaluator
