# Tiny occupancy model on the embedded synthetic world (its Occ3D labels): the demo's tiny spine (32x32 BEV
# of 2 m over +-32 m) with the tiny occupancy head. Trains on a 2-core CPU (tools/demo.py --tasks occupancy).
_base_ = ["../bev/bevformer_v2_tiny_synthetic.py", "./_base_/tiny_occupancy_head.py"]

model = dict(head=None, perspective_head=None, hybrid_queries=0, heads=dict(occupancy={{_base_.tiny_occupancy_head}}))
train_dataloader = dict(dataset=dict(labels=("occupancy",)))
val_dataloader = dict(dataset=dict(labels=("occupancy",)))
test_dataloader = val_dataloader
val_evaluator = [{{_base_.occupancy_evaluator}}]
test_evaluator = val_evaluator
