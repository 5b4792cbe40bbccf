"""Top-k accuracy for image classification (mmengine metric)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from mmengine.evaluator import BaseMetric

from perception.engine.registry import METRICS

__all__ = ["TopKAccuracy", "topk_accuracy"]


def topk_accuracy(scores: torch.Tensor, labels: torch.Tensor, topk: Sequence[int] = (1, 5)) -> dict[int, float]:
    """Percentage of samples whose label is among the ``k`` highest scores, for each k."""
    if len(labels) == 0:
        raise ValueError("topk_accuracy: no samples")
    out = {}
    for k in topk:
        k_eff = min(k, scores.shape[1])
        top = scores.topk(k_eff, dim=1).indices
        out[k] = float((top == labels.view(-1, 1)).any(dim=1).float().mean() * 100.0)
    return out


@METRICS.register_module()
class TopKAccuracy(BaseMetric):
    """Top-1/top-5 accuracy in percent; keys ``top1``, ``top5`` (prefix ``accuracy/`` by default)."""

    default_prefix = "accuracy"

    def __init__(self, topk: Sequence[int] = (1, 5), collect_device: str = "cpu", prefix: str | None = None) -> None:
        super().__init__(collect_device=collect_device, prefix=prefix)
        self.topk = tuple(topk)

    def process(self, data_batch: Any, data_samples: Sequence[dict]) -> None:
        for sample in data_samples:
            self.results.append((sample["pred_score"].detach().float().cpu(), int(sample["gt_label"])))

    def compute_metrics(self, results: list) -> dict[str, float]:
        scores = torch.stack([r[0] for r in results])
        labels = torch.tensor([r[1] for r in results])
        return {f"top{k}": v for k, v in topk_accuracy(scores, labels, self.topk).items()}
