"""Session fixtures of the distributed tests: a synthetic world with an odd number of val samples and
the two training runs that several test modules compare (docs/distributed.md, "What CI proves").

Both runs train the three-head tiny config with batch 1 per process, no random augmentation and a
constant learning rate:

- ``reference_run``: one process, 4 iterations, gradients accumulated over 2, i.e. 2 optimizer steps
  of 2 samples (iterations 2k and 2k+1 form step k);
- ``ddp_run``: 2 ranks x 2 iterations, i.e. 2 optimizer steps of 2 samples (rank r's iteration k).

Both draw the same shuffled order (seed 0), so DDP step k trains on the samples of reference step k,
and DDP's all-reduced gradient (the mean of the ranks') is the accumulated one (the mean of the
micro-batches'). The losses are normalised per batch (DETR by its matched boxes, BatchNorm by its batch
statistics, the occupancy loss over the batch's voxels), so one process with batch 2 would compute a
different, not a wrong, gradient: accumulation over the ranks' micro-batches is the exact reference.
"""

from __future__ import annotations

import pytest

from tests.distributed.runs import IMAGE_SIZE, OddWorld, TrainRun, train


@pytest.fixture(scope="session")
def odd_world(tmp_path_factory) -> OddWorld:
    """2 scenes x 5 key frames (one scene per split): 5 train and 5 val samples, an odd count."""
    from perception.data.infos import create_nuscenes_infos
    from perception.data.synthetic import VERSION, WorldConfig, generate_world

    root = tmp_path_factory.mktemp("odd_world")
    generate_world(WorldConfig(str(root), seed=7, num_scenes=2, samples_per_scene=5, image_size=IMAGE_SIZE,
                               workers=2), progress=False)
    written = create_nuscenes_infos(str(root), VERSION, str(root), workers=1, progress=False)
    return OddWorld(root, written["train"], written["val"])


@pytest.fixture(scope="session")
def reference_run(odd_world, tmp_path_factory) -> TrainRun:
    return train(odd_world, tmp_path_factory.mktemp("reference") / "work", ranks=1, iters=4, accumulate=2)


@pytest.fixture(scope="session")
def ddp_run(odd_world, tmp_path_factory) -> TrainRun:
    return train(odd_world, tmp_path_factory.mktemp("ddp") / "work", ranks=2, iters=2)
