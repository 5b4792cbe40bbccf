"""The Waymo-format fixture shared by the tests/perception/test_waymo_*.py files: written once per session by
the tools (``create_data.py synthetic-waymo`` and ``waymo``) on first use."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from tests.tool_loader import load_tool

_CACHE: dict[str, WaymoData] = {}


@dataclass(frozen=True)
class WaymoData:
    root: Path
    config: object  # perception.data.waymo.fixture.WaymoFixtureConfig
    training_infos: Path
    validation_infos: Path


def waymo_data(tmp_path_factory) -> WaymoData:
    if "data" not in _CACHE:
        from perception.data.waymo.fixture import WaymoFixtureConfig

        root = tmp_path_factory.mktemp("waymo_fixture")
        create_data = load_tool("create_data")
        assert create_data.main(["synthetic-waymo", "--out", str(root), "--frames", "4"]) == 0
        for split in ("training", "validation"):
            assert create_data.main(["waymo", "--root", str(root), "--split", split, "--workers", "2"]) == 0
        config = WaymoFixtureConfig(str(root), frames_per_segment=4)
        _CACHE["data"] = WaymoData(root, config, root / "waymo_infos_training.pkl", root / "waymo_infos_validation.pkl")
    return _CACHE["data"]
