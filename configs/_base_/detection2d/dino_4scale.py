# DINO-4scale (official InternImage recipe, docs/pretraining_2d.md): InternImage levels 1-3 through a 1x1
# channel mapper (GN 32) plus a stride-64 level, 6 encoder + 6 decoder layers (256 dims, FFN 2048, 8 heads,
# 4 points, dropout 0), 900 queries, two-stage mixed query selection, box refinement with look forward twice,
# 100 contrastive denoising queries (label noise 0.5, box noise 1.0), focal 1 / L1 5 / GIoU 2 with the
# Hungarian costs focal 2 / L1 5 / GIoU 2, top-300 decoding without NMS.
num_classes = 80
model = dict(
    type="DINO",
    num_classes=num_classes,
    backbone=dict(type="InternImage", variant="t", out_indices=(1, 2, 3), layer_scale=1.0, offset_scale=1.0,
                  drop_path_rate=0.2, with_cp=True),
    embed_dims=256, num_queries=900, encoder_layers=6, decoder_layers=6, num_heads=8, ffn_dims=2048,
    num_points=4, dropout=0.0, gn_groups=32,
    num_denoising_queries=100, label_noise=0.5, box_noise=1.0,
    cls_weight=1.0, l1_weight=5.0, giou_weight=2.0, cls_cost=2.0, l1_cost=5.0, giou_cost=2.0,
    max_detections=300,
)
