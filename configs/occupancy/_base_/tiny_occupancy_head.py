# The tiny models' occupancy head (its in_channels are the spine's) and the tiny spine's BEV grid for
# occupancy. The head convolves on a 0.8 m feature grid over the Occ3D range (100x100: a quarter of the
# 0.4 m grid's compute) with one 3x3 conv and 8 channels per height, and upsamples its logits onto the
# Occ3D grid (200x200x16, 0.4 m). It trains inside the camera mask (the challenge lesson) with
# cross-entropy + Lovasz on 50k of the batch's counted voxels drawn each step, because the Lovasz sort
# over all of them dominated a 2-core CPU step (docs/occupancy.md, "The tiny model"). Its cross-entropy is
# weighted by the synthetic world's class frequencies: voxels per class inside the camera mask of the demo
# world's train split (seed 0; Occ3D class order, free last), so the rare classes (objects, buildings) learn.
synthetic_occupancy_voxel_counts = (0, 610, 424, 2240, 7260, 4691, 1134, 1626, 241, 6639, 4929, 315337, 0, 128447,
                                    312124, 203056, 46310, 13513497)
tiny_occupancy_head = dict(type="OccupancyHead", feature_resolution=0.8, mid_channels=32, num_2d_convs=1,
                           height_channels=8, num_3d_convs=0, classifier_channels=16, loss_mask="camera",
                           loss_lovasz_weight=1.0, loss_max_voxels=50000,
                           class_frequencies=synthetic_occupancy_voxel_counts)
# 32x32 cells of 2.5 m: the tiny detector's cell count over the Occ3D range (+-40 m), so no voxel lies
# outside the spine's BEV; z spans the Occ3D heights [-1, 5.4] m with the tiny model's margin.
tiny_occupancy_bev_grid = dict(x_range=(-40.0, 40.0), y_range=(-40.0, 40.0), z_range=(-3.0, 5.0), resolution=2.5)
