# The tiny models' lane-topology head (its in_channels and grid are the spine's): 11-point centerlines
# over OpenLane-V2's lane range from 30 queries, 10 traffic-element queries on the front camera's 3
# finest FPN levels, 2 decoder layers each, small topology MLPs (docs/lanes.md, "The tiny model").
tiny_lane_head = dict(type="LaneTopologyHead", num_points=11, num_lane_queries=30, num_te_queries=10, num_layers=2,
                      num_heads=4, ffn_dims=128, dropout=0.0, te_levels=3, topology_dims=32)
# 32x16 cells of 3.2 m over TopoNet's BEV range (x +-51.2 m, y +-25.6 m), which covers the lanes'.
tiny_lane_bev_grid = dict(x_range=(-51.2, 51.2), y_range=(-25.6, 25.6), z_range=(-3.0, 5.0), resolution=3.2)
