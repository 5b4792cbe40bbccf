"""The README's main job (tools/demo.py) end to end on a tiny world: world generation, devkit
evaluation before and after training through the mmengine Runner, pictures, and the RESULT line."""

from __future__ import annotations

import re

import pytest

from tests.tool_loader import load_tool


@pytest.mark.slow
def test_demo_runs_end_to_end(tmp_path, capsys):
    demo = load_tool("demo")
    assert demo.main(["--out", str(tmp_path), "--max-minutes", "0.5", "--scenes", "2", "--samples-per-scene", "4",
                      "--pictures", "2"]) == 0
    out = capsys.readouterr().out
    result = re.search(r"^RESULT NDS=(\S+) mAP=(\S+) untrained_NDS=(\S+)$", out, re.MULTILINE)
    assert result, out[-2000:]
    nds, mean_ap, untrained = (float(v) for v in result.groups())
    assert 0.0 <= nds <= 1.0 and 0.0 <= mean_ap <= 1.0 and 0.0 <= untrained <= 1.0
    pictures = sorted((tmp_path / "pictures").glob("*.png"))
    assert len(pictures) == 2 and all(p.stat().st_size > 10_000 for p in pictures)
    assert (tmp_path / "train" / "nuscenes_eval" / "results_nusc.json").exists()
    assert list((tmp_path / "train").glob("*/vis_data/events.out.tfevents.*")), "no tensorboard log"
