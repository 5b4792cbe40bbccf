"""Bipartite matching for set-prediction heads; kept as a re-export of :mod:`perception.models.detr.matcher`,
where the matcher and its cost terms now live."""

from perception.models.detr.matcher import focal_classification_cost, hungarian_match

__all__ = ["focal_classification_cost", "hungarian_match"]
