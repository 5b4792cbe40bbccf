"""lane_topology package."""
