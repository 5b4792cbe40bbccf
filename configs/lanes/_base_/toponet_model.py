# TopoNet-style lane topology on our BEVFormer v2 spine (docs/lanes.md): a 200x100 BEV of 0.512 m over
# x in [-51.2, 51.2] m, y in [-25.6, 25.6] m and z in [-2.3, 1.7] m, a 3-layer encoder, one frame, and the
# lane-topology head: 200 centerline queries of 11 points over OpenLane-V2's lane range, 100
# traffic-element queries on the front camera's 4 FPN levels, 6 decoder layers each, topology MLPs.
# Schedule: BEVFormer's (bevformer_v2_model_v1_schedule.py). The backbone is set per variant; the
# number of cameras comes from the dataset (num_cameras).
_base_ = ["../../bev/_base_/bevformer_v2_model_v1_schedule.py"]

bev_grid = dict(x_range=(-51.2, 51.2), y_range=(-25.6, 25.6), z_range=(-2.3, 1.7), resolution=0.512)
num_frames = 1

model = dict(
    bev_grid=bev_grid,
    num_frames=num_frames,
    encoder=dict(num_layers=3),
    head=None,
    perspective_head=None,
    heads=dict(lanes=dict(type="LaneTopologyHead", num_points=11, num_lane_queries=200, num_te_queries=100,
                          num_layers=6, num_heads=8, ffn_dims=512, dropout=0.1, te_levels=4, topology_dims=128)),
)
