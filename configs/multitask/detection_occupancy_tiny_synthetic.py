# Detection and occupancy on one tiny spine, on the embedded synthetic world (tools/demo.py --tasks
# detection,occupancy): the tiny detector's heads (DETR boxes + perspective head + hybrid queries) and the
# tiny occupancy head, scored by both metrics.
_base_ = ["../bev/bevformer_v2_tiny_synthetic.py", "../occupancy/_base_/tiny_occupancy_head.py"]

model = dict(
    bev_grid={{_base_.tiny_occupancy_bev_grid}},  # the Occ3D range, so both heads see every voxel
    head=None, perspective_head=None, hybrid_queries=0,
    heads=dict(detection=dict(type="Detection3DHead", decoder={{_base_.model.head}},
                              perspective={{_base_.model.perspective_head}},
                              hybrid_queries={{_base_.model.hybrid_queries}}),
               occupancy={{_base_.tiny_occupancy_head}}))
train_dataloader = dict(dataset=dict(labels=("boxes", "occupancy")))
val_dataloader = dict(dataset=dict(labels=("boxes", "occupancy")))
test_dataloader = val_dataloader
val_evaluator = [{{_base_.detection_evaluator}}, {{_base_.occupancy_evaluator}}]
test_evaluator = val_evaluator
