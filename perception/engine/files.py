"""Reading and writing the project's pickle files with one kind of error: a missing, truncated or
corrupt file raises the caller's error class with a message naming the file and the problem."""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

__all__ = ["read_pickle"]

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
