# TopoNet-style lane topology with InternImage-S on OpenLane-V2 subset_B at the published settings
# (_base_/toponet_model.py: BEV 200x100 over [-51.2, 51.2] x [-25.6, 25.6] m, AdamW 2e-4, 24 epochs).
# Backbone weights: backbone.pretrained=PATH (no download at run time).
_base_ = ["../_base_/datasets/openlane_v2_subset_B.py", "./_base_/toponet_model.py", "../bev/_base_/runtime.py"]

model = dict(backbone=dict(variant="s", drop_path_rate=0.3), encoder=dict(num_cameras={{_base_.num_cameras}}))
log_processor = dict(by_epoch=True, window_size=50)
