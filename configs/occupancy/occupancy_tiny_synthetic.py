# Tiny occupancy model on the embedded synthetic world (its Occ3D labels): the demo's tiny spine on a
# 32x32 BEV of 2.5 m over the Occ3D range (+-40 m) with the tiny occupancy head. Trains on a 2-core CPU
# (tools/demo.py --tasks occupancy).
_base_ = ["../bev/bevformer_v2_tiny_synthetic.py", "./_base_/tiny_occupancy_head.py"]

model = dict(bev_grid={{_base_.tiny_occupancy_bev_grid}}, head=None, perspective_head=None, hybrid_queries=0,
             heads=dict(occupancy={{_base_.tiny_occupancy_head}}))
train_dataloader = dict(dataset=dict(labels=("occupancy",)))
val_dataloader = dict(dataset=dict(labels=("occupancy",)))
test_dataloader = val_dataloader
val_evaluator = [{{_base_.occupancy_evaluator}}]
test_evaluator = val_evaluator
