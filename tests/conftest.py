"""Session-wide fixtures shared by the test packages.

``synthetic_world``: a small synthetic nuScenes-format world (2 scenes x 6 key frames at 240x135,
v1.0-mini with scene names from the devkit's mini_train / mini_val lists) plus its info files,
generated once per session on first use and shared by every test that asks for it.

``synthetic_2d``: the synthetic 2D sets (perception/data/synthetic/sets2d.py; 2 scenes x 2 key frames x
CAM_FRONT and CAM_BACK at 160x96: 4 train and 4 val images), a COCO-format detection set under ``root/coco``
and an ADE20K-format segmentation set under ``root/ade``, generated once per session on first use.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest


@dataclass(frozen=True)
class SyntheticWorld:
    root: Path
    version: str
    train_infos: Path
    val_infos: Path
    image_size: tuple[int, int]
    seed: int


@pytest.fixture(scope="session")
def synthetic_world(tmp_path_factory) -> SyntheticWorld:
    from perception.data.infos import create_nuscenes_infos
    from perception.data.synthetic import VERSION, WorldConfig, generate_world

    root = tmp_path_factory.mktemp("synthetic_world")
    config = WorldConfig(
        str(root), seed=7, num_scenes=2, samples_per_scene=6, image_size=(240, 135), workers=2
    )
    generate_world(config, progress=False)
    written = create_nuscenes_infos(str(root), VERSION, str(root), workers=1, progress=False)
    return SyntheticWorld(root, VERSION, written["train"], written["val"], config.image_size, config.seed)


@pytest.fixture(scope="session")
def nusc(synthetic_world):
    """The devkit's own view of the synthetic world (independent truth for the tests)."""
    from nuscenes.nuscenes import NuScenes

    return NuScenes(synthetic_world.version, str(synthetic_world.root), verbose=False)


@dataclass(frozen=True)
class Synthetic2DSets:
    root: Path
    coco_train: Path  # instances_train.json; images in root/coco/train
    coco_val: Path
    ade_root: Path  # images/{training,validation}, annotations/{training,validation}
    config: object  # the Synthetic2DConfig it was generated with


@pytest.fixture(scope="session")
def synthetic_2d(tmp_path_factory) -> Synthetic2DSets:
    from perception.data.synthetic.sets2d import Synthetic2DConfig, generate_2d_sets

    root = tmp_path_factory.mktemp("synthetic_2d")
    config = Synthetic2DConfig(str(root), seed=3, num_scenes=2, samples_per_scene=2, image_size=(160, 96))
    written = generate_2d_sets(config, progress=False)
    return Synthetic2DSets(root, written["train"], written["val"], root / "ade", config)
