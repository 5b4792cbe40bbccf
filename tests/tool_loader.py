"""Load a command-line script from tools/ as a module: tools/ is not a package (nothing imports it),
so tests reach its ``main`` functions through this one loader.

``python tools/x.py`` puts tools/ first on ``sys.path``, which is how the scripts find their private
helpers (``from _runner_common import ...``, ``_timing``, ``_profile``); the project packages come
from the installed (editable) distribution. This loader does the same while a tool (or a helper) is
imported, and takes tools/ off ``sys.path`` again afterwards: left there for the whole test session,
``tools/test.py``, ``train.py``, ``evaluate.py``... would shadow modules of those names (the standard
library's ``test`` package among them). The helpers stay in ``sys.modules``, as in a script's run.
``run_demo_to_result`` runs the demo's 2D tasks end to end for their tests.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

TOOLS = Path(__file__).resolve().parents[1] / "tools"


@contextlib.contextmanager
def _tools_on_path() -> Iterator[None]:
    """tools/ as ``sys.path[0]``, as Python sets it for a script in tools/."""
    entry = str(TOOLS)
    if entry in sys.path:  # already there (e.g. a test run from inside tools/): leave sys.path alone
        yield
        return
    sys.path.insert(0, entry)
    try:
        yield
    finally:
        sys.path.remove(entry)


def load_tool(name: str) -> ModuleType:
    """``tools/<name>.py`` executed as module ``tool_<name>``."""
    spec = importlib.util.spec_from_file_location(f"tool_{name}", TOOLS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    with _tools_on_path():
        spec.loader.exec_module(module)
    return module


def import_helper(name: str) -> ModuleType:
    """A private helper of the tools (``_timing``, ``_profile``, ``_runner_common``), imported by its
    plain name as the tools import it, so a test and a tool share one module object."""
    with _tools_on_path():
        return importlib.import_module(name)


def run_demo_to_result(tmp_path, capsys, task: str, metric: str, top: float) -> None:
    """``tools/demo.py --tasks TASK`` on a tiny set (2 scenes of 2 samples) within 0.3 minutes: it exits 0,
    ends with ``RESULT METRIC=.. untrained_METRIC=..`` whose values lie in [0, ``top``], and draws two
    pictures named after the task."""
    demo = load_tool("demo")
    assert demo.main(["--out", str(tmp_path), "--max-minutes", "0.3", "--scenes", "2", "--samples-per-scene", "2",
                      "--pictures", "2", "--tasks", task]) == 0
    out = capsys.readouterr().out
    result = re.search(rf"^RESULT {metric}=(\S+) untrained_{metric}=(\S+)$", out, re.MULTILINE)
    assert result, out[-2000:]
    assert all(0.0 <= float(v) <= top for v in result.groups())
    pictures = sorted((tmp_path / "pictures").glob(f"{task}_*.png"))
    assert len(pictures) == 2 and all(p.stat().st_size > 5_000 for p in pictures)
