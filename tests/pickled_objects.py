"""Objects the checkpoint-loading tests pickle: a harmless class outside the allow-list, and one whose full
unpickling would run a shell command (tests/backbones/test_safe_loading.py,
tests/perception/test_safe_runner_checkpoints.py)."""

from __future__ import annotations

import os
from pathlib import Path


class CustomPayload:
    """A class of the tests' own: harmless, but not on the allow-list."""

    def __init__(self, value: int) -> None:
        self.value = value


class ShellCommand:
    """Unpickling it in full would run a shell command that creates ``marker``."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)
