"""Distributed evaluation: ``torchrun --nproc-per-node 2 tools/test.py CONFIG CKPT --launcher pytorch`` on
an odd number of val samples gives exactly the single process's detection, occupancy and lane metrics,
and every metric scores each sample once, in dataset order (docs/distributed.md, "Evaluation").

mmengine's DefaultSampler pads the 5 samples to 6 (rank 0: 0, 2, 4; rank 1: 1, 3, 0) and the metrics'
collect_results interleaves the ranks' results and cuts them to 5, which holds while a metric keeps one
result per processed sample. Both runs use batch 1, so each prediction is computed alone in both.
"""

from __future__ import annotations

import json
import math

import pytest

from tests.distributed.runs import TINY_CONFIG, eval_options, run_tool

pytestmark = pytest.mark.slow

PREFIXES = ("nuscenes", "occupancy", "lanes")


def evaluate(world, checkpoint, work_dir, ranks: int) -> dict:
    work_dir.mkdir(parents=True)
    out = work_dir / "metrics.json"
    run_tool("test", [str(TINY_CONFIG), str(checkpoint), "--work-dir", str(work_dir), "--out-metrics", str(out),
                      "--cfg-options", *eval_options(world, work_dir)], ranks=ranks, cwd=work_dir)
    return json.loads(out.read_text())


@pytest.fixture(scope="module")
def evaluations(odd_world, ddp_run, tmp_path_factory) -> dict[int, dict]:
    root = tmp_path_factory.mktemp("evaluation")
    return {ranks: evaluate(odd_world, ddp_run.checkpoint, root / f"ranks{ranks}", ranks) for ranks in (1, 2)}


def same(a: float, b: float) -> bool:
    return a == b or (math.isnan(a) and math.isnan(b))


def test_two_ranks_give_exactly_the_single_process_metrics(evaluations):
    single, distributed = evaluations[1]["metrics"], evaluations[2]["metrics"]
    for key in ("nuscenes/NDS", "nuscenes/mAP", "occupancy/mIoU", "occupancy/RayIoU", "lanes/OLS"):
        assert key in single
    assert single.keys() == distributed.keys()
    differing = {k: (single[k], distributed[k]) for k in single if not same(single[k], distributed[k])}
    assert not differing


def test_every_metric_scores_each_val_sample_once_in_dataset_order(evaluations, odd_world):
    from perception.data.infos import load_infos

    tokens = [info["token"] for info in load_infos(odd_world.val_infos)[1]]
    assert len(tokens) % 2 == 1  # uneven over 2 ranks: the sampler pads one sample
    for ranks, evaluation in evaluations.items():
        assert sorted(evaluation["scored_samples"]) == sorted(PREFIXES)
        for prefix in PREFIXES:
            assert evaluation["scored_samples"][prefix] == tokens, f"{prefix} with {ranks} rank(s)"
