# Tiny lane-topology model on the embedded synthetic world (its OpenLane-V2 labels and data_dict): the
# demo's tiny spine on a 32x16 BEV of 3.2 m over TopoNet's range with the tiny lane head, scored by
# OLS v2.1. Trains on a 2-core CPU (tools/demo.py --tasks lanes).
_base_ = ["../bev/bevformer_v2_tiny_synthetic.py", "./_base_/tiny_lane_head.py"]

model = dict(bev_grid={{_base_.tiny_lane_bev_grid}}, head=None, perspective_head=None, hybrid_queries=0,
             heads=dict(lanes={{_base_.tiny_lane_head}}))
train_dataloader = dict(dataset=dict(labels=("lanes",)))
val_dataloader = dict(dataset=dict(labels=("lanes",)))
test_dataloader = val_dataloader
val_evaluator = [{{_base_.lane_evaluator}}]
test_evaluator = val_evaluator
