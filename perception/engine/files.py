"""Reading and writing the project's pickle files with one kind of error: a missing, truncated or
corrupt file raises the caller's error class with a message naming the file and the problem."""

from __future__ import annotations

import os
import pickle
from pathlib import Path
from typing import Any

__all__ = ["read_pickle", "set_default_file_mode"]

# What unpickling a truncated or foreign byte stream raises besides UnpicklingError.
_CORRUPT = (EOFError, pickle.UnpicklingError, ValueError, AttributeError, ImportError, IndexError)


def read_pickle(path: str | Path, what: str, error: type[Exception] = ValueError, hint: str = "") -> Any:
    """Unpickle ``path``; ``error(f"{what} {path} does not exist")`` when it is not a file, and
    ``error(f"{what} {path} is truncated or not a pickle (...){hint}")`` when it cannot be read."""
    path = Path(path)
    if not path.is_file():
        raise error(f"{what} {path} does not exist")
    try:
        with open(path, "rb") as f:
            return pickle.load(f)
    except _CORRUPT as err:
        raise error(f"{what} {path} is truncated or not a pickle ({type(err).__name__}: {err}){hint}") from err


def set_default_file_mode(path: str | Path) -> None:
    """Give ``path`` the mode a plain ``open(path, "w")`` would (0666 less the umask, e.g. 0644): files written
    through ``tempfile.mkstemp`` and renamed into place are otherwise left at 0600, unreadable to the group."""
    umask = os.umask(0)  # the only portable way to read the umask is to set it
    os.umask(umask)
    os.chmod(path, 0o666 & ~umask)
