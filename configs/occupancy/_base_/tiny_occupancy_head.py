# The tiny models' occupancy head (its in_channels are the spine's): resamples the BEV onto the Occ3D grid
# (200x200x16, 0.4 m), one 3x3 conv, 8 channels per height, trained inside the camera mask with
# cross-entropy + Lovasz (the challenge lesson).
tiny_occupancy_head = dict(type="OccupancyHead", mid_channels=32, num_2d_convs=1, height_channels=8, num_3d_convs=0,
                           classifier_channels=16, loss_mask="camera", loss_lovasz_weight=1.0)
