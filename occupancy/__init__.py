"""occupancy package."""
