# Detection, occupancy and lane topology on one tiny spine, on the embedded synthetic world (tools/demo.py
# --tasks detection,occupancy,lanes): the tiny detector's heads, the tiny occupancy head and the tiny lane
# head on a 32x32 BEV of 3.2 m over +-51.2 m, which covers the detection, Occ3D and OpenLane-V2 ranges.
_base_ = ["./detection_occupancy_tiny_synthetic.py", "../lanes/_base_/tiny_lane_head.py"]

model = dict(
    bev_grid=dict(x_range=(-51.2, 51.2), y_range=(-51.2, 51.2), z_range=(-3.0, 5.0), resolution=3.2),
    # Without the two-stage hybrid queries: at the demo's budget they did not help the tiny detector
    # (README, "Hybrid queries on vs off") and cost iterations the three heads need.
    heads=dict(detection=dict(hybrid_queries=0), lanes={{_base_.tiny_lane_head}}))
train_dataloader = dict(dataset=dict(labels=("boxes", "occupancy", "lanes")))
val_dataloader = dict(dataset=dict(labels=("boxes", "occupancy", "lanes")))
test_dataloader = val_dataloader
val_evaluator = [{{_base_.detection_evaluator}}, {{_base_.occupancy_evaluator}}, {{_base_.lane_evaluator}}]
test_evaluator = val_evaluator
