"""The metrics refuse a sample handed to them twice (a rank's results collected twice, or the sampler's
padding kept): :func:`perception.engine.check_each_sample_once` in each metric's compute_metrics
(docs/distributed.md, "Evaluation")."""

from __future__ import annotations

import pytest

from perception.engine import DuplicateSampleError, check_each_sample_once
from perception.evaluation.nuscenes import NuScenesDetectionMetric
from perception.evaluation.occupancy import OccupancyMetric
from perception.evaluation.openlane_v2 import OpenLaneV2Metric


def test_the_check_keeps_the_order_and_names_the_repeated_sample():
    assert check_each_sample_once(iter(["b", "a", "c"]), "M") == ["b", "a", "c"]
    with pytest.raises(DuplicateSampleError, match=r"M: 1 of 2 samples .* more than once \(e\.g\. a, 2 times\)"):
        check_each_sample_once(["a", "b", "a"], "M")


@pytest.mark.parametrize("metric, results", [
    (NuScenesDetectionMetric("infos.pkl", "root"), [{"sample_token": "s0"}, {"sample_token": "s0"}]),
    (OccupancyMetric("infos.pkl", "root"), [{"token": "s0", "hist": None}, {"token": "s0", "hist": None}]),
    (OpenLaneV2Metric("infos.pkl", ground_truth="gt.pkl"),
     [{"token": "s0", "key": ("val", "0", 0), "frame": {}}, {"token": "s0", "key": ("val", "0", 0), "frame": {}}]),
], ids=["detection", "occupancy", "lanes"])
def test_each_metric_refuses_a_sample_scored_twice(metric, results):
    with pytest.raises(DuplicateSampleError, match=type(metric).__name__):
        metric.compute_metrics(results)
