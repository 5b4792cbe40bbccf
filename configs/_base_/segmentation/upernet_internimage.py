# UperNet on InternImage (official mmseg recipe, docs/pretraining_2d.md "Segmentation (UperNet)"): PPM (1, 2, 3, 6)
# on the last level, FPN over the four levels, 512 channels; FCN auxiliary head on level 2 (256 channels, loss
# weight 0.4); cross-entropy ignoring 255. The heads' in_channels come from the backbone's out_channels.
num_classes = 150
model = dict(
    type="EncoderDecoderSegmentor",
    num_classes=num_classes,
    data_preprocessor=dict(type="SegDataPreprocessor", mean=(123.675, 116.28, 103.53), std=(58.395, 57.12, 57.375),
                           size=(512, 512), size_divisor=32, pad_val=0, seg_pad_val=255),
    backbone=dict(type="InternImage", variant="t", out_indices=(0, 1, 2, 3), layer_scale=1.0, offset_scale=1.0,
                  drop_path_rate=0.2, pretrained=None),  # pretrained: e.g. "checkpoints/internimage_t_1k_224.pth"
    decode_head=dict(type="UPerHead", channels=512, pool_scales=(1, 2, 3, 6), dropout=0.1),
    auxiliary_head=dict(type="FCNHead", in_index=2, channels=256, num_convs=1, dropout=0.1),
    aux_loss_weight=0.4,
    ignore_index=255,
    test_mode="whole",
)
