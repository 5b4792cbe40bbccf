# BEVFormer-Occ-style occupancy on our BEVFormer v2 spine (the Occ3D-nuScenes challenge baseline's
# settings, docs/occupancy.md): a 200x200 BEV of 0.4 m over x, y in [-40, 40] m and z in [-1, 5.4] m (the
# Occ3D grid, so the head needs no resampling), a 4-layer encoder with 8 pillar anchors, 4 frames, and an
# occupancy head (in_channels from the spine) lifting the BEV to 16 x 16 heights, two 3D convs, 18 classes.
# The published head trains cross-entropy on all voxels without class weights; the challenge lesson
# (+10-15 mIoU) is loss_mask="camera" with Lovasz: set model.heads.occupancy.loss_mask=camera
# model.heads.occupancy.loss_lovasz_weight=1.0. Schedule: BEVFormer's (bevformer_v2_model_v1_schedule.py).
# The backbone is set per variant.
_base_ = ["../../bev/_base_/bevformer_v2_model_v1_schedule.py"]

bev_grid = dict(x_range=(-40.0, 40.0), y_range=(-40.0, 40.0), z_range=(-1.0, 5.4), resolution=0.4)
num_frames = 4

model = dict(
    bev_grid=bev_grid,
    num_frames=num_frames,
    fusion_channels=512,
    encoder=dict(num_layers=4, pillar_heights=8, points_per_height=1),
    head=None,
    perspective_head=None,
    heads=dict(occupancy=dict(type="OccupancyHead", voxel_grid=bev_grid, num_2d_convs=0,
                              height_channels=16, num_3d_convs=2, classifier_channels=64, loss_mask="none",
                              loss_lovasz_weight=0.0)),
)
