"""Toy lane-topology targets for model tests: two directed lanes (one continuing the other) and one
traffic element in the front camera controlling the first lane."""

from __future__ import annotations

import torch


def toy_lane_targets(batch: int, num_points: int = 11, image_w: int = 160, image_h: int = 64) -> dict:
    t = torch.linspace(0, 1, num_points)[:, None]
    first = torch.cat([t * 10, torch.full_like(t, -1.5), torch.zeros_like(t)], -1)
    second = first + torch.tensor([10.0, 0.0, 0.0])
    box = torch.tensor([[0.4 * image_w, 0.1 * image_h, 0.5 * image_w, 0.3 * image_h]])
    return dict(lanes=[torch.stack([first, second])] * batch, traffic_elements=[box] * batch,
                traffic_element_labels=[torch.tensor([2])] * batch,
                topology_lane_lane=[torch.tensor([[0.0, 1.0], [0.0, 0.0]])] * batch,
                topology_lane_te=[torch.tensor([[1.0], [0.0]])] * batch)
