"""FSDP2 training through ``torchrun --nproc-per-node 2 tools/train.py CONFIG --launcher pytorch
--strategy fsdp`` on CPU (gloo): every InternImage block and stage is its own FSDP unit with the
backbone's activation checkpointing on, the losses are DDP's (conftest.py) and the checkpoint is a full
state dict of DDP's weights.

Tolerances: those of test_ddp_training.py (docs/distributed.md, "What CI proves"). FSDP's
reduce-scatter averages the 2 ranks' gradients as exactly as DDP's all-reduce: measured 0 difference
in losses and weights against DDP.
"""

from __future__ import annotations

import math

import pytest

from tests.distributed.runs import load_weights, parameter_rms_difference, train

pytestmark = pytest.mark.slow

FIRST_STEP_LOSS_RTOL = 1e-5
LATER_LOSS_RTOL = 1e-4
WEIGHTS_RMS = 5e-5
# The tiny backbone's depths (1, 1, 2, 1): its stages (InternImageBlock) and blocks (InternImageLayer).
STAGES = [f"spine.backbone.levels.{i}" for i in range(4)]
BLOCKS = [f"spine.backbone.levels.{i}.blocks.{j}" for i, depth in enumerate((1, 1, 2, 1)) for j in range(depth)]


@pytest.fixture(scope="module")
def fsdp_run(odd_world, tmp_path_factory):
    return train(odd_world, tmp_path_factory.mktemp("fsdp") / "work", ranks=2, iters=2, extra=("--strategy", "fsdp"))


def test_every_internimage_block_and_stage_is_an_fsdp_unit(fsdp_run):
    for audit in fsdp_run.audits:
        assert audit["model"].startswith("FSDP")  # fully_shard gives the model an FSDP subclass
        assert sorted(audit["sharded_modules"]) == sorted(["", *STAGES, *BLOCKS])
    assert "strategy fsdp (FSDP2): 10 units, activation checkpointing on" in fsdp_run.output


def test_fsdp_ranks_end_with_identical_parameters(fsdp_run):
    digests = [audit["digests"]["parameters"] for audit in fsdp_run.audits]  # of the gathered tensors
    assert digests[0] == digests[1]


def test_fsdp_losses_match_ddp(fsdp_run, ddp_run):
    for rank in range(2):
        for step, (got, expected) in enumerate(zip(fsdp_run.audits[rank]["iterations"],
                                                   ddp_run.audits[rank]["iterations"], strict=True)):
            assert got["samples"] == expected["samples"]
            tolerance = FIRST_STEP_LOSS_RTOL if step == 0 else LATER_LOSS_RTOL
            assert math.isclose(got["losses"]["loss"], expected["losses"]["loss"], rel_tol=tolerance), (
                f"rank {rank} step {step}: FSDP loss {got['losses']['loss']} vs DDP {expected['losses']['loss']}")


def test_fsdp_checkpoint_is_a_full_state_dict_of_ddps_weights(fsdp_run, ddp_run):
    sharded, replicated = load_weights(fsdp_run.checkpoint), load_weights(ddp_run.checkpoint)
    assert {k: tuple(v.shape) for k, v in sharded.items()} == {k: tuple(v.shape) for k, v in replicated.items()}
    assert not any(type(v).__name__ == "DTensor" for v in sharded.values())
    difference = parameter_rms_difference(sharded, replicated)
    assert difference < WEIGHTS_RMS, f"weights {difference:.2e} RMS apart"
