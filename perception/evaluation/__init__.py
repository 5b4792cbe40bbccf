"""Evaluation: converts predictions to each benchmark's format and computes its metrics."""

from .lane_submission import (
    LaneSubmissionError,
    build_lane_submission,
    check_lane_submission,
    load_lane_submission,
    write_lane_submission,
)
from .openlane_v2 import (
    OpenLaneV2EvaluationError,
    OpenLaneV2Metric,
    evaluate_ols,
    format_ols_table,
    frame_from_prediction,
    load_lane_ground_truth,
)

__all__ = [
    "LaneSubmissionError",
    "OpenLaneV2EvaluationError",
    "OpenLaneV2Metric",
    "build_lane_submission",
    "check_lane_submission",
    "evaluate_ols",
    "format_ols_table",
    "frame_from_prediction",
    "load_lane_ground_truth",
    "load_lane_submission",
    "write_lane_submission",
]
