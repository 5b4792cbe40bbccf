"""bev package."""
