"""One-line errors for the command-line tools (not a public module; docs/robustness.md, "One-line errors").

Every tool ends with ``run_tool(main, "<tool>.py")``. A user error (a missing or malformed file, a bad
argument, an input that fails validation) prints one line ``<tool>.py: error: <message>`` to stderr and
exits with code 2; ``--debug`` (any position, taken off ``sys.argv`` before the tool parses it) or
``PERCEPTION_DEBUG=1`` prints the traceback first. Anything else is a bug of ours and keeps its traceback.
Tools whose ``main(argv)`` tests call directly wrap their body in ``one_line_errors(prog)`` (the same
handling, as ``SystemExit(2)``) or return ``report_user_error(prog, err)``. argparse's own errors (an
unknown option, a missing required argument) keep argparse's usage line and exit code 2.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NoReturn

__all__ = [
    "USER_ERRORS",
    "UsageError",
    "load_json_file",
    "one_line_errors",
    "one_line_message",
    "report_user_error",
    "run_tool",
    "user_error_types",
]

DEBUG_FLAG = "--debug"
DEBUG_ENV = "PERCEPTION_DEBUG"
USER_ERROR_EXIT_CODE = 2


class UsageError(Exception):
    """A problem with a tool's arguments or input files; the message names the argument or file."""


# What counts as the user's fault: these classes, and the project's own error types named by their module
# (resolved through ``sys.modules`` only: a class whose module was never imported cannot have been raised,
# and a type still under development in another module needs no import guard). Subclasses count too
# (OccupancySubmissionError, LaneLoadError, OpenLaneV2Error, ...).
USER_ERRORS: tuple[type[BaseException] | str, ...] = (
    UsageError,
    FileNotFoundError,
    IsADirectoryError,
    NotADirectoryError,
    PermissionError,
    json.JSONDecodeError,
    "perception.data.infos.InfoFileError",
    "perception.data.transforms_bev.ImageLoadError",
    "perception.data.labels.base.LabelLoadError",
    "perception.evaluation.nuscenes.SubmissionError",
    "perception.evaluation.lane_submission.LaneSubmissionError",
    "perception.evaluation.occupancy_submission.OccupancyEvaluationError",
    "perception.evaluation.openlane_v2.OpenLaneV2EvaluationError",
    "perception.engine.distributed.DuplicateSampleError",
    "perception.evaluation.waymo_submission.WaymoSubmissionError",
    "perception.engine.checkpointing.ResumeError",
    "backbones.checkpoint.CheckpointError",
)


def user_error_types() -> tuple[type[BaseException], ...]:
    """The classes of :data:`USER_ERRORS` that exist in this process."""
    types = []
    for entry in USER_ERRORS:
        if isinstance(entry, str):
            module_name, _, class_name = entry.rpartition(".")
            entry = getattr(sys.modules.get(module_name), class_name, None)
        if isinstance(entry, type) and issubclass(entry, BaseException):
            types.append(entry)
    return tuple(types)


def _worker_original_message(err: BaseException, text: str) -> str:
    """The worker's own message of an error that a DataLoader re-raised in the main process.

    torch re-raises it as the same type with the message "Caught X in DataLoader worker process N.
    Original Traceback (most recent call last): ..." ending in the worker's ``<module>.X: <message>``
    line; a user needs only that message."""
    if not text.startswith("Caught ") or "Original Traceback" not in text:
        return text
    cls = type(err)
    for prefix in (f"\n{cls.__module__}.{cls.__qualname__}: ", f"\n{cls.__qualname__}: "):
        at = text.rfind(prefix)
        if at >= 0:
            return text[at + len(prefix):]
    return text


def one_line_message(err: BaseException) -> str:
    """``err``'s message on one line: an OS error as ``<file>: <reason>``, a DataLoader worker's error as
    the worker's own message."""
    if isinstance(err, OSError) and err.filename is not None and err.strerror:
        text = f"{err.filename}: {err.strerror}"
    elif isinstance(err, json.JSONDecodeError):  # its message does not name the file: load_json_file does
        text = f"invalid JSON: {err}"
    else:
        text = _worker_original_message(err, str(err)) or type(err).__name__
    return " ".join(line.strip() for line in text.splitlines() if line.strip())


_debug = False  # set by run_tool from --debug


def debug_requested() -> bool:
    """True when ``--debug`` was given to the tool or the environment sets PERCEPTION_DEBUG=1."""
    return _debug or os.environ.get(DEBUG_ENV, "").strip().lower() in ("1", "true", "yes", "on")


def _take_debug_flag(argv: list[str]) -> bool:
    """Remove ``--debug`` from ``argv`` (in place, before a ``--`` separator); True if it was there."""
    end = argv.index("--") if "--" in argv else len(argv)
    found = DEBUG_FLAG in argv[1:end]
    argv[1:end] = [a for a in argv[1:end] if a != DEBUG_FLAG]
    return found


def report_user_error(prog: str, err: BaseException) -> int:
    """Print ``err`` as the one line ``<prog>: error: <message>`` (after its traceback under --debug) and
    return the exit code of a user error."""
    if debug_requested():
        traceback.print_exception(err)
    print(f"{prog}: error: {one_line_message(err)}", file=sys.stderr)
    return USER_ERROR_EXIT_CODE


@contextlib.contextmanager
def one_line_errors(prog: str) -> Iterator[None]:
    """Turn a user error raised inside into one line on stderr and ``SystemExit(2)``; other errors pass."""
    try:
        yield
    except Exception as err:
        if not isinstance(err, user_error_types()):
            raise
        raise SystemExit(report_user_error(prog, err)) from None


def run_tool(main: Callable[[], Any], prog: str | None = None) -> NoReturn:
    """Run a tool's ``main()`` (which reads ``sys.argv``) and exit: with its return code (an int; any other
    return value means success), 2 with one line on stderr for a user error, or with the traceback of any
    other error."""
    global _debug
    before, _debug = _debug, _take_debug_flag(sys.argv) or _debug
    try:
        with one_line_errors(prog or Path(sys.argv[0]).name):
            result = main()
    finally:  # a tool run in-process (tests) leaves no debug mode behind
        _debug = before
    raise SystemExit(result if isinstance(result, int) else 0)


def load_json_file(path: str | Path, what: str = "file") -> Any:
    """The parsed JSON of ``path``; a missing file or invalid (e.g. truncated) JSON raises :class:`UsageError`
    naming ``what`` and the file."""
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"{what} {path} does not exist" if not path.exists() else f"{what} {path} is not a file")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise UsageError(f"{what} {path} is not valid JSON (truncated?): {err}") from err
    except UnicodeDecodeError as err:
        raise UsageError(f"{what} {path} is not a JSON text file: {err}") from err

