"""Reading official InternImage checkpoints (and our own) into the models of this package.

Accepted inputs:

* ``.pth``/``.pt``/``.bin`` files holding a bare state dict or one wrapped in ``model``,
  ``state_dict``, ``module`` or ``model_ema`` (official classification training checkpoints carry
  both ``model`` and ``model_ema``; ``use_ema=True`` picks the EMA weights);
* mmdet/mmseg checkpoints (``backbone.`` prefix; neck/head keys are dropped), DDP ``module.``
  prefixes, HuggingFace exports (``model.`` prefix, ``layer_scale1/2`` for ``gamma1/2``);
* ``.safetensors`` files (our own format: :func:`save_checkpoint`).

Files are read safely (:func:`load_checkpoint_file`): damaged files are refused before any
unpickling, torch files load with ``weights_only=True`` and the allow-list of
:mod:`backbones.checkpoint_allowlist`, and full unpickling needs ``trusted=True``; dtypes are checked
like shapes (docs/backbones.md, "Loading checkpoints").

T's released classification checkpoint has no layer-scale gammas; a model built with
``layer_scale`` (downstream configs use 1.0) gets gammas of 1.0 for missing ones, which leaves
its function unchanged (docs/backbones.md). A 21841-class head can be mapped to 1000 classes with a
class-map file (one 22k index per line, e.g. upstream ``meta_data/map22kto1k.txt``), or dropped.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

__all__ = ["HEAD_PREFIXES", "CheckpointError", "CheckpointMismatchError", "CheckpointNeedsTrustError",
           "CheckpointNotFoundError", "LoadReport", "convert_state_dict", "export_safetensors", "extract_state_dict",
           "load_checkpoint_file", "load_pretrained", "map_head_22k_to_1k", "save_checkpoint",
           "trust_all_checkpoints"]

WRAPPER_KEYS = ("state_dict", "model", "module", "model_ema")
# Keys of the classification heads (absent from a feature extractor).
HEAD_PREFIXES = ("conv_head.", "head.", "dcnv3_head_x4.", "dcnv3_head_x3.", "clip_projector.", "fc_norm.")
_HF_RENAMES = ((re.compile(r"\.layer_scale1$"), ".gamma1"), (re.compile(r"\.layer_scale2$"), ".gamma2"))
_GAMMA = re.compile(r"\.gamma[12]$")


class CheckpointError(ValueError):
    """A checkpoint that cannot be used; the message names the file and says what is wrong
    (does not exist, empty, truncated, not a checkpoint, needs full unpickling and how to opt in,
    wrong variant, shape or dtype)."""

    def __init__(self, path: str | Path, problem: str) -> None:
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{path}: {problem}")


class CheckpointNotFoundError(CheckpointError, FileNotFoundError):
    """The checkpoint file does not exist (also a ``FileNotFoundError``)."""


class CheckpointNeedsTrustError(CheckpointError):
    """The file pickles types outside the allow-list: it loads only with the explicit opt-in."""


_ZIP_MAGIC = b"PK\x03\x04"
_LEGACY_TORCH_MAGIC = b"\x80\x02\x8a\x0a"  # torch < 1.6 files start with a protocol-2 pickled magic number
_OPT_IN = ("if you trust the file, load it with trusted=True (tools: --trust-checkpoint), which unpickles it "
           "in full and can run any code it contains")
_trust_every_checkpoint = False


def trust_all_checkpoints(trusted: bool = True) -> None:
    """Process-wide opt-in to full unpickling, for the tools' ``--trust-checkpoint`` flag: it reaches the
    loads made deep inside a model build (a backbone's ``pretrained``) and mmengine's Runner."""
    global _trust_every_checkpoint
    _trust_every_checkpoint = bool(trusted)


def load_checkpoint_file(path: str | Path, *, trusted: bool = False, map_location: Any = "cpu") -> Any:
    """Read a checkpoint file (``.safetensors``, or a torch zip/legacy file) safely.

    Torch files load with ``weights_only=True`` and the allow-list of
    :func:`backbones.checkpoint_allowlist.harmless_checkpoint_globals`. A file that pickles anything
    else raises :class:`CheckpointNeedsTrustError`, unless ``trusted=True`` (or
    :func:`trust_all_checkpoints`) says to unpickle it in full. A file that cannot be a checkpoint
    (missing, empty, truncated, random bytes) raises :class:`CheckpointError` before any unpickling.
    """
    path = Path(path)
    kind = _file_kind(path)
    if kind == "safetensors":
        return _load_safetensors(path, map_location)
    try:
        return _torch_load(path, map_location, weights_only=True)
    except CheckpointNeedsTrustError:
        if not (trusted or _trust_every_checkpoint):
            raise
    return _torch_load(path, map_location, weights_only=False)


def _file_kind(path: Path) -> str:
    """'zip', 'legacy' or 'safetensors'; CheckpointError for anything that cannot be a checkpoint."""
    if not path.exists():
        raise CheckpointNotFoundError(path, "checkpoint file does not exist")
    if not path.is_file():
        raise CheckpointError(path, "not a checkpoint file (it is a directory or a special file)")
    size = path.stat().st_size
    if size == 0:
        raise CheckpointError(path, "the checkpoint file is empty (0 bytes; an interrupted download or save?)")
    with path.open("rb") as file:
        head = file.read(16)
    if head.startswith(_ZIP_MAGIC):
        _check_zip(path, size)
        return "zip"
    if head.startswith(_LEGACY_TORCH_MAGIC):
        _check_legacy(path)
        return "legacy"
    if _looks_like_safetensors(head, size) or path.suffix == ".safetensors":
        return "safetensors"
    if len(head) > 1 and head[0] == 0x80 and 2 <= head[1] <= 5:
        raise CheckpointError(path, "not a torch checkpoint: a plain Python pickle (torch.save writes a zip "
                                    "archive); convert it with torch.save or to .safetensors where it was made")
    raise CheckpointError(path, f"not a checkpoint: neither a torch file (zip or legacy) nor safetensors "
                                f"({size} bytes starting with {head[:8]!r})")


def _check_zip(path: Path, size: int) -> None:
    import zipfile

    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
    except (zipfile.BadZipFile, OSError) as err:
        raise CheckpointError(path, f"truncated or corrupt torch checkpoint: its zip archive cannot be read "
                                    f"({err}; {size} bytes; an interrupted save or download?)") from None
    pickles = [name for name in names if name.endswith("/data.pkl") or name == "data.pkl"]
    if not pickles:
        raise CheckpointError(path, "not a torch checkpoint: a zip archive without data.pkl")
    try:  # reading the (small) object pickle through checks its CRC: no damaged pickle reaches an unpickler
        with zipfile.ZipFile(path) as archive:
            archive.read(pickles[0])
    except (zipfile.BadZipFile, OSError, EOFError) as err:
        raise CheckpointError(path, f"corrupt torch checkpoint: {pickles[0]} cannot be read ({err})") from None


def _check_legacy(path: Path) -> None:
    """A torch < 1.6 file: its leading pickles (magic number, protocol, system info, the object, the
    storage keys) must be complete; parsing them does not execute them."""
    import pickletools

    with path.open("rb") as file:
        try:
            for _ in range(5):
                for _opcode in pickletools.genops(file):
                    pass
        except ValueError as err:
            raise CheckpointError(path, f"truncated or corrupt legacy torch checkpoint ({err})") from None


def _looks_like_safetensors(head: bytes, size: int) -> bool:
    """safetensors: a little-endian u64 header length, then a JSON header."""
    return len(head) >= 9 and head[8:9] == b"{" and 8 + int.from_bytes(head[:8], "little") <= size


def _torch_load(path: Path, map_location: Any, weights_only: bool) -> Any:
    import pickle

    from .checkpoint_allowlist import harmless_checkpoint_globals

    try:
        if not weights_only:
            return _full_load(path, map_location)
        with torch.serialization.safe_globals(harmless_checkpoint_globals()):
            try:
                return torch.load(path, map_location=map_location, weights_only=True)
            except pickle.UnpicklingError as err:
                if not _is_refusal(err):
                    raise
                raise CheckpointNeedsTrustError(path, _refusal_message(path, err)) from None
    except CheckpointError:
        raise
    except (EOFError, RuntimeError, pickle.UnpicklingError, ValueError, OSError) as err:
        raise CheckpointError(path, f"truncated or corrupt torch checkpoint: {_first_line(err)}") from None


def _full_load(path: Path, map_location: Any) -> Any:
    """Full unpickling (the caller trusts the file)."""
    try:
        return torch.load(path, map_location=map_location, weights_only=False)
    except (AttributeError, ImportError) as err:
        raise CheckpointError(path, f"full unpickling failed: it pickles a class or function this Python cannot "
                                    f"import ({_first_line(err)})") from None


def _is_refusal(err: Exception) -> bool:
    """A restricted-unpickler refusal (an unlisted type), as opposed to a damaged file."""
    text = str(err)
    return any(marker in text for marker in ("Unsupported global", "unrecognized function", "Can only ",
                                             "is not on the allow-list", "is blocked", "Unsupported operand"))


def _refusal_message(path: Path, err: Exception) -> str:
    from .checkpoint_allowlist import harmless_checkpoint_globals

    with torch.serialization.safe_globals(harmless_checkpoint_globals()):
        try:  # every unlisted type at once (zip files only)
            names = torch.serialization.get_unsafe_globals_in_checkpoint(path)
        except Exception:  # noqa: BLE001 - legacy file: the message gives torch's reason instead
            names = []
    what = ", ".join(names) if names else _refusal_reason(err)
    return (f"needs full unpickling: it pickles {what} (not on the allow-list of harmless types, "
            f"docs/backbones.md 'Loading checkpoints'); {_OPT_IN}")


def _refusal_reason(err: Exception) -> str:
    text = str(err)
    match = re.search(r"GLOBAL (\S+)", text)
    if match:
        return match.group(1)
    for line in text.splitlines():
        if any(marker in line for marker in ("unrecognized function", "Can only ", "is not on the allow-list")):
            return f"an object the restricted unpickler refused ({line.strip()})"
    return f"an object the restricted unpickler refused ({_first_line(err)})"


def _first_line(err: BaseException) -> str:
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    return f"{type(err).__name__}: {lines[0]}" if lines else type(err).__name__


def _load_safetensors(path: Path, map_location: Any) -> dict[str, Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    _check_safetensors_size(path)
    device = map_location if isinstance(map_location, str | torch.device) else "cpu"
    try:
        return load_file(str(path), device=str(device))
    except SafetensorError as err:
        raise CheckpointError(path, f"not a valid safetensors file: {err}") from None


def _check_safetensors_size(path: Path) -> None:
    """A truncated safetensors file: its header promises more tensor bytes than the file holds."""
    import json

    size = path.stat().st_size
    with path.open("rb") as file:
        head = file.read(8)
        header_length = int.from_bytes(head, "little") if len(head) == 8 else -1
        if header_length < 0 or 8 + header_length > size:
            raise CheckpointError(path, f"not a valid safetensors file: truncated or not safetensors "
                                        f"({size} bytes, header length {header_length})")
        try:
            header = json.loads(file.read(header_length))
        except (UnicodeDecodeError, json.JSONDecodeError) as err:
            raise CheckpointError(path, f"not a valid safetensors file: unreadable header ({err})") from None
    if not isinstance(header, dict):
        raise CheckpointError(path, "not a valid safetensors file: the header is not a JSON object")
    ends = [entry["data_offsets"][1] for key, entry in header.items()
            if key != "__metadata__" and isinstance(entry, dict) and "data_offsets" in entry]
    needed = 8 + header_length + max(ends, default=0)
    if needed > size:
        raise CheckpointError(path, f"truncated safetensors file: its header describes {needed} bytes, the "
                                    f"file has {size} (an interrupted save or download?)")


def extract_state_dict(obj: Any, use_ema: bool = False) -> dict[str, Tensor]:
    """The state dict inside a checkpoint container (see the module docstring)."""
    if not isinstance(obj, Mapping):
        raise TypeError(f"a checkpoint must be a dict, got {type(obj).__name__}")
    if use_ema:
        if "model_ema" not in obj:
            raise KeyError(f"use_ema=True but the checkpoint has no 'model_ema' (keys: {sorted(obj)[:10]})")
        obj = obj["model_ema"]
    else:
        for key in WRAPPER_KEYS:
            if key in obj and isinstance(obj[key], Mapping):
                obj = obj[key]
                break
    # nested containers (e.g. {'model_ema': {'state_dict': ...}} or {'module': {...}})
    while isinstance(obj, Mapping) and any(k in obj for k in WRAPPER_KEYS) \
            and not any(isinstance(v, Tensor) for v in obj.values()):
        obj = next(obj[k] for k in WRAPPER_KEYS if k in obj)
    state = {k: v for k, v in obj.items() if isinstance(v, Tensor)}
    if not state:
        raise ValueError("no tensors found in the checkpoint (expected a state dict, possibly wrapped in "
                         f"one of {WRAPPER_KEYS})")
    return state


def convert_state_dict(state: Mapping[str, Tensor], prefix: str | None = None) -> dict[str, Tensor]:
    """Official key names: strip ``module.``/``model.`` (HF) and, for detection/segmentation
    checkpoints, keep only the ``backbone.`` keys without the prefix; rename HF layer scales.

    ``prefix`` forces the prefix to strip (keys without it are dropped).
    """
    state = {k.removeprefix("module."): v for k, v in state.items()}
    keys = list(state)
    if prefix is None:
        if any(k.startswith("backbone.") for k in keys):
            prefix = "backbone."
        elif keys and all(k.startswith("model.") for k in keys):
            prefix = "model."
        else:
            prefix = ""
    out: dict[str, Tensor] = {}
    for key, value in state.items():
        if not key.startswith(prefix):
            continue
        key = key[len(prefix):]
        for pattern, replacement in _HF_RENAMES:
            key = pattern.sub(replacement, key)
        out[key] = value
    return out


def map_head_22k_to_1k(state: dict[str, Tensor], class_map: str | Path) -> dict[str, Tensor]:
    """Keep the rows of ``head.weight/bias`` listed (one 22k class index per line) in ``class_map``."""
    path = Path(class_map)
    if not path.is_file():
        raise FileNotFoundError(f"class-map file not found: {path}")
    indices = [int(line.split()[0]) for line in path.read_text().splitlines() if line.strip()]
    index = torch.tensor(indices, dtype=torch.long)
    out = dict(state)
    for key in ("head.weight", "head.bias"):
        if key not in out:
            raise KeyError(f"cannot map the head: the checkpoint has no {key!r}")
        if index.max() >= out[key].shape[0]:
            raise ValueError(f"{path}: class index {int(index.max())} is outside the head's "
                             f"{out[key].shape[0]} classes")
        out[key] = out[key][index].clone()
    return out


@dataclass
class LoadReport:
    """What did not line up between a checkpoint and a model."""

    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    wrong_shape: list[tuple[str, tuple, tuple]] = field(default_factory=list)
    filled_with_ones: list[str] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)
    wrong_dtype: list[tuple[str, torch.dtype, torch.dtype]] = field(default_factory=list)
    cast: list[tuple[str, torch.dtype, torch.dtype]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (self.missing or self.unexpected or self.wrong_shape or self.wrong_dtype)

    def table(self) -> str:
        """A readable table of the problems (and of the tolerated differences)."""
        rows = [("missing (in model, not in checkpoint)", k, "") for k in self.missing]
        rows += [("unexpected (in checkpoint, not in model)", k, "") for k in self.unexpected]
        rows += [("wrong shape", k, f"checkpoint {list(c)} vs model {list(m)}") for k, c, m in self.wrong_shape]
        rows += [("wrong dtype (refused)", k, f"checkpoint {c} vs model {m}") for k, c, m in self.wrong_dtype]
        rows += [("cast (float to float)", k, f"checkpoint {c} -> model {m}") for k, c, m in self.cast]
        rows += [("layer scale filled with 1.0", k, "") for k in self.filled_with_ones]
        rows += [("dropped (head)", k, "") for k in self.dropped]
        if not rows:
            return "all keys matched"
        width = max(len(r[0]) for r in rows)
        key_width = max(len(r[1]) for r in rows)
        lines = [f"{'problem'.ljust(width)}  {'key'.ljust(key_width)}  detail", "-" * (width + key_width + 10)]
        lines += [f"{a.ljust(width)}  {b.ljust(key_width)}  {c}".rstrip() for a, b, c in rows]
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.table()


class CheckpointMismatchError(CheckpointError, RuntimeError):
    """The checkpoint does not fit the model (keys, shapes: a wrong variant?, or dtypes)."""


def load_pretrained(model: nn.Module, checkpoint: str | Path | Mapping[str, Tensor], strict: bool = True,
                    head: str = "keep", class_map: str | Path | None = None, use_ema: bool = False,
                    prefix: str | None = None, *, trusted: bool = False) -> LoadReport:
    """Load an official (or our own) checkpoint into an InternImage model.

    Args:
        checkpoint: a file path or an already-loaded checkpoint/state dict.
        strict: raise (with the mismatch table) unless every key and shape matches.
        head: ``'keep'`` load the head as is; ``'drop'`` ignore the checkpoint's head (a feature
            extractor always drops it); ``'map'`` map a 22k head to 1k with ``class_map``.
        use_ema: take ``model_ema`` from a training checkpoint.
        prefix: force the key prefix to strip (default: detected).
        trusted: allow full unpickling of a file that needs it (see :func:`load_checkpoint_file`).
    Returns:
        The :class:`LoadReport`. Float tensors of another float dtype are cast with a warning; any
        other dtype difference (e.g. int64 into a float parameter) raises :class:`CheckpointMismatchError`
        whatever ``strict`` says, as does a key/shape mismatch with ``strict``.
    """
    if head not in ("keep", "drop", "map"):
        raise ValueError(f"head must be 'keep', 'drop' or 'map', got {head!r}")
    is_file = isinstance(checkpoint, str | Path)
    source = str(checkpoint) if is_file else "checkpoint (an in-memory state dict)"
    raw = load_checkpoint_file(checkpoint, trusted=trusted) if is_file else checkpoint
    state = _converted_state(raw, source, use_ema=use_ema, prefix=prefix)
    if head == "map":
        if class_map is None:
            raise ValueError("head='map' needs class_map (a file with one 22k class index per line)")
        state = map_head_22k_to_1k(state, class_map)
    target = model.state_dict()
    report = LoadReport()
    drop_head = head == "drop" or not any(k.startswith(HEAD_PREFIXES) for k in target)
    if drop_head:
        report.dropped = sorted(k for k in state if k.startswith(HEAD_PREFIXES))
        state = {k: v for k, v in state.items() if not k.startswith(HEAD_PREFIXES)}
    for key in list(target):
        if key not in state and _GAMMA.search(key):
            state[key] = torch.ones_like(target[key], device="cpu")
            report.filled_with_ones.append(key)
    _compare(state, target, drop_head, report)
    _raise_on_mismatch(report, source, strict, state, target)
    loadable = {k: v for k, v in state.items() if k in target and v.shape == target[k].shape}
    model.load_state_dict(loadable, strict=False)
    if report.cast:
        warnings.warn(f"{source}: {_cast_notice(report.cast)}", stacklevel=2)
    if not report.ok:
        warnings.warn(f"checkpoint {source} loaded partially:\n{report.table()}", stacklevel=2)
    return report


def _converted_state(raw: Any, source: str, use_ema: bool, prefix: str | None) -> dict[str, Tensor]:
    """The official-named state dict of a loaded checkpoint; CheckpointError naming ``source`` if none."""
    try:
        return convert_state_dict(extract_state_dict(raw, use_ema=use_ema), prefix=prefix)
    except KeyError as err:  # use_ema=True without 'model_ema'
        raise CheckpointError(source, str(err.args[0])) from None
    except (TypeError, ValueError) as err:
        raise CheckpointError(source, f"not a model checkpoint: {err}") from None


def _compare(state: Mapping[str, Tensor], target: Mapping[str, Tensor], drop_head: bool, report: LoadReport) -> None:
    """Fill ``report`` with the key, shape and dtype differences."""
    report.missing = sorted(k for k in target
                            if k not in state and not (drop_head and k.startswith(HEAD_PREFIXES)))
    report.unexpected = sorted(k for k in state if k not in target)
    report.wrong_shape = [(k, tuple(state[k].shape), tuple(target[k].shape)) for k in target
                          if k in state and state[k].shape != target[k].shape]
    for key, wanted in target.items():
        given = state.get(key)
        if given is None or given.shape != wanted.shape or given.dtype == wanted.dtype:
            continue
        # float-to-float keeps the values up to rounding; int/bool <-> float would change their meaning
        both_float = given.is_floating_point() and wanted.is_floating_point()
        (report.cast if both_float else report.wrong_dtype).append((key, given.dtype, wanted.dtype))


def _raise_on_mismatch(report: LoadReport, source: str, strict: bool, state: Mapping[str, Tensor],
                       target: Mapping[str, Tensor]) -> None:
    if report.wrong_dtype:
        rows = "\n".join(f"  {k}: checkpoint {c} vs model {m}" for k, c, m in report.wrong_dtype)
        raise CheckpointMismatchError(source, f"{len(report.wrong_dtype)} tensor(s) of a dtype that cannot be "
                                              f"cast into the model (only float-to-float casts are):\n{rows}")
    if strict and not report.ok:
        raise CheckpointMismatchError(source, f"checkpoint does not match the model{_variant_hint(state, target)}:"
                                              f"\n{report.table()}")


def _cast_notice(cast: list[tuple[str, torch.dtype, torch.dtype]], shown: int = 20) -> str:
    keys = ", ".join(k for k, _, _ in cast[:shown]) + (f" and {len(cast) - shown} more" if len(cast) > shown else "")
    pairs = sorted({f"{c} -> {m}" for _, c, m in cast})
    return f"cast {len(cast)} float tensor(s) to the model's dtype ({', '.join(pairs)}): {keys}"


def _architecture(state: Mapping[str, Tensor]) -> str | None:
    """'channels C, depths (...)' of an InternImage state dict (None when it is not one)."""
    stem = state.get("patch_embed.conv2.weight")
    if stem is None:
        return None
    blocks: dict[int, set[int]] = {}
    for key in state:
        match = re.match(r"levels\.(\d+)\.blocks\.(\d+)\.", key)
        if match:
            blocks.setdefault(int(match.group(1)), set()).add(int(match.group(2)))
    depths = tuple(len(blocks[level]) for level in sorted(blocks))
    return f"channels {stem.shape[0]}, depths {depths}"


def _variant_hint(state: Mapping[str, Tensor], target: Mapping[str, Tensor]) -> str:
    given, wanted = _architecture(state), _architecture(target)
    if given and wanted and given != wanted:
        return f" (wrong variant? the checkpoint has {given}, the model {wanted})"
    return ""


def save_checkpoint(model_or_state: nn.Module | Mapping[str, Tensor], path: str | Path,
                    metadata: Mapping[str, str] | None = None) -> Path:
    """Save weights as safetensors (official key names; shared tensors are copied)."""
    from safetensors.torch import save_file

    state = model_or_state.state_dict() if isinstance(model_or_state, nn.Module) else model_or_state
    state = {k: v.detach().cpu().contiguous().clone() for k, v in state.items()}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(state, str(path), metadata=dict(metadata or {}))
    return path


def export_safetensors(source: str | Path, destination: str | Path, use_ema: bool = False, *,
                       trusted: bool = False) -> Path:
    """Convert any checkpoint this module reads (official .pth, mmengine/mmdet, HF) to a safetensors
    file with the official key names."""
    state = _converted_state(load_checkpoint_file(source, trusted=trusted), str(source), use_ema=use_ema, prefix=None)
    return save_checkpoint(state, destination, metadata={"source": Path(source).name})


def _main(argv: list[str] | None = None) -> None:
    import argparse

    parser = argparse.ArgumentParser(description="Convert an InternImage checkpoint to safetensors with the "
                                                 "official key names: python -m backbones.checkpoint SRC DST")
    parser.add_argument("source")
    parser.add_argument("destination")
    parser.add_argument("--use-ema", action="store_true", help="take 'model_ema' from a training checkpoint")
    parser.add_argument("--trust-checkpoint", action="store_true",
                        help="the source is trusted: unpickle it in full if it holds types outside the allow-list")
    args = parser.parse_args(argv)
    path = export_safetensors(args.source, args.destination, use_ema=args.use_ema, trusted=args.trust_checkpoint)
    print(f"wrote {path}")


if __name__ == "__main__":
    _main()
