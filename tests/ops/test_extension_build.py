"""The JIT build: the CUDA architecture flags, checked on CPU (the right ``-gencode`` flags for the
visible GPUs, none of torch's own next to them, a build that never writes the process environment),
and a kernel cache shared by checkouts (two clones and two ranks started together build once)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from torch.utils import cpp_extension

from ops import _extension

ARCH_ENV = "TORCH_CUDA_ARCH_LIST"


class _ReadOnlyEnviron(dict):
    """``os.environ`` stand-in that fails the test on any write, a scoped set-and-restore included."""

    def _refuse(self, *args, **kwargs):
        raise AssertionError(f"the build wrote the process environment: {args}")

    __setitem__ = __delitem__ = setdefault = update = pop = popitem = clear = _refuse


@pytest.mark.parametrize(("capabilities", "arch_list"), [
    ([(9, 0)], "9.0"),
    ([(8, 6), (8, 0), (8, 6)], "8.0;8.6"),
    ([(12, 0), (7, 5)], "7.5;12.0"),
])
def test_arch_flags_are_those_torch_writes_for_the_same_list(monkeypatch, capabilities, arch_list):
    ours = _extension._cuda_arch_flags(capabilities)
    monkeypatch.setenv(ARCH_ENV, arch_list)  # the test's own environment, not the build's
    assert sorted(ours) == cpp_extension._get_cuda_arch_flags()
    assert len(ours) == len(set(capabilities)) and not any("code=compute_" in f for f in ours)  # SASS, no PTX


def test_torch_adds_no_arch_flags_next_to_ours(monkeypatch):
    monkeypatch.delenv(ARCH_ENV, raising=False)
    flags = _extension._CUDA_FLAGS + _extension._cuda_arch_flags([(9, 0)])
    assert cpp_extension._get_cuda_arch_flags(flags) == []


def _captured_build(monkeypatch, tmp_path, kind: str) -> dict:
    monkeypatch.setenv(_extension.CACHE_ENV, str(tmp_path))
    monkeypatch.setattr(_extension, "_visible_capabilities", lambda: [(8, 0), (9, 0)])
    calls = []
    monkeypatch.setattr(cpp_extension, "load", lambda **kwargs: calls.append(kwargs) or "module")
    before = dict(os.environ)
    with monkeypatch.context() as build:  # only around the build: pytest itself writes the environment
        build.setattr(os, "environ", _ReadOnlyEnviron(before))
        assert _extension._build(kind) == "module"
    assert dict(os.environ) == before
    assert len(calls) == 1
    return calls[0]


def test_cuda_build_passes_the_visible_archs_and_leaves_the_environment(monkeypatch, tmp_path):
    monkeypatch.delenv(ARCH_ENV, raising=False)
    kwargs = _captured_build(monkeypatch, tmp_path, "cuda")
    assert ARCH_ENV not in os.environ
    flags = kwargs["extra_cuda_cflags"]
    assert [f for f in flags if "arch" in f] == ["-gencode=arch=compute_80,code=sm_80",
                                                 "-gencode=arch=compute_90,code=sm_90"]
    assert flags[:len(_extension._CUDA_FLAGS)] == _extension._CUDA_FLAGS and "-DWITH_CUDA" in flags
    assert kwargs["build_directory"] == str(_extension.build_directory("cuda"))


def test_cuda_build_leaves_a_user_arch_list_to_torch(monkeypatch, tmp_path):
    monkeypatch.setenv(ARCH_ENV, "8.6+PTX")
    kwargs = _captured_build(monkeypatch, tmp_path, "cuda")
    assert os.environ[ARCH_ENV] == "8.6+PTX"
    assert not any("arch" in f for f in kwargs["extra_cuda_cflags"])  # torch reads the list itself


def test_cpu_build_has_no_cuda_arch_flags(monkeypatch, tmp_path):
    monkeypatch.delenv(ARCH_ENV, raising=False)
    kwargs = _captured_build(monkeypatch, tmp_path, "cpu")
    assert not any("arch" in f for f in kwargs["extra_cuda_cflags"])
    assert ARCH_ENV not in os.environ


def test_cpu_build_targets_this_cpu_and_keys_the_cache_by_it(monkeypatch, tmp_path):
    # -march=native code runs only on CPUs like the one that built it, so the CPU is part of the key.
    monkeypatch.setattr(_extension, "_host_cflags", lambda: ["-march=native"])
    kwargs = _captured_build(monkeypatch, tmp_path, "cpu")
    assert "-march=native" in kwargs["extra_cflags"] and "-fno-trapping-math" in kwargs["extra_cflags"]
    monkeypatch.setattr(_extension, "_cpu_identity", lambda: "model name : one CPU")
    one = _extension.build_directory("cpu")
    monkeypatch.setattr(_extension, "_cpu_identity", lambda: "model name : another CPU")
    assert _extension.build_directory("cpu") != one


def test_build_command_names_no_path_of_the_checkout(monkeypatch, tmp_path):
    # Sources compiled from copies inside the cache folder, no include path: the same command for
    # every checkout, so ninja never sees a change between two clones.
    monkeypatch.delenv(ARCH_ENV, raising=False)
    kwargs = _captured_build(monkeypatch, tmp_path, "cuda")
    checkout = str(_extension._CSRC.parent.parent)
    directory = _extension.build_directory("cuda")
    assert not kwargs.get("extra_include_paths")
    assert all(Path(s).parent == directory / _extension._STAGED for s in kwargs["sources"])
    flags = kwargs["extra_cflags"] + kwargs["extra_cuda_cflags"] + kwargs["extra_ldflags"]
    assert not any(checkout in str(value) for value in [*kwargs["sources"], *flags, kwargs["build_directory"]])
    for name in _extension._CUDA_SOURCES + _extension._HEADERS:
        assert (directory / _extension._STAGED / name).read_bytes() == (_extension._CSRC / name).read_bytes()


def test_staged_copies_are_rewritten_only_when_damaged(tmp_path):
    _extension._stage_sources("cpu", tmp_path)
    staged = tmp_path / _extension._STAGED
    kept, damaged = staged / "kernels.h", staged / "bindings.cpp"
    os.utime(kept, ns=(1, 1))  # a rewrite would give it the current time, which ninja reads as a change
    damaged.write_bytes(b"half a fi")
    _extension._stage_sources("cpu", tmp_path)
    assert kept.stat().st_mtime_ns == 1
    assert damaged.read_bytes() == (_extension._CSRC / "bindings.cpp").read_bytes()
    assert sorted(p.name for p in staged.iterdir()) == sorted(_extension._CPU_SOURCES + _extension._HEADERS)


def test_a_folder_without_a_completed_build_is_built(monkeypatch, tmp_path):
    name = "perception_ops_cpu_0"
    (tmp_path / f"{name}.so").write_bytes(b"")  # a library without the completion record: maybe partial
    assert _extension._import_completed(tmp_path, name) is None
    _extension._mark_complete(tmp_path, "another_name")
    assert _extension._import_completed(tmp_path, name) is None


def test_a_damaged_library_is_removed_so_that_ninja_links_it_again(tmp_path):
    name = "perception_ops_cpu_0"
    library = tmp_path / f"{name}.so"
    library.write_bytes(b"not an ELF file")
    _extension._mark_complete(tmp_path, name)
    assert _extension._import_completed(tmp_path, name) is None
    assert not library.exists()


def test_a_lock_left_by_a_killed_build_is_cleared(monkeypatch, tmp_path):
    # torch's own lock file outlives a rank killed mid-build, and torch would wait on it forever;
    # under our file lock no other process can be building.
    monkeypatch.setenv(_extension.CACHE_ENV, str(tmp_path))
    directory = _extension.build_directory("cpu")
    directory.mkdir(parents=True)
    (directory / "lock").touch()
    seen = []
    monkeypatch.setattr(cpp_extension, "load", lambda **kwargs: seen.append((directory / "lock").exists()) or "module")
    assert _extension._build("cpu") == "module" and seen == [False]


def test_edited_sources_get_their_own_folder(monkeypatch, tmp_path):
    monkeypatch.setenv(_extension.CACHE_ENV, str(tmp_path / "cache"))
    original = _extension.build_directory("cpu")
    edited = tmp_path / "csrc"
    shutil.copytree(_extension._CSRC, edited)
    with open(edited / "kernels.h", "a") as header:
        header.write("\n// edited\n")
    monkeypatch.setattr(_extension, "_CSRC", edited)
    assert _extension.build_directory("cpu") != original


# Run in a fresh interpreter whose `ops` is the clone's copy: loads the CPU kernels and checks one
# result against the pure-PyTorch reference, so a library that loads but computes nonsense fails.
_LOAD_FROM_CLONE = """
import sys
from pathlib import Path
import torch
import ops
from ops import _extension
clone = Path(sys.argv[1]).resolve()
assert Path(ops.__file__).resolve().is_relative_to(clone), ops.__file__
assert _extension.load_kernels("cpu") is not None, "the CPU kernels did not load"
torch.manual_seed(0)
shapes = torch.tensor([[4, 4], [2, 2]])
value = torch.randn(1, 20, 2, 4)
locations, weights = torch.rand(1, 3, 2, 2, 2, 2), torch.rand(1, 3, 2, 2, 2)
args = (value, shapes, torch.tensor([0, 16]), locations, weights)
torch.testing.assert_close(ops.ms_deform_attn(*args, backend="cpu"), ops.ms_deform_attn_reference(*args))
print(_extension.build_directory("cpu"))
"""


def _clone_ops(root: Path) -> Path:
    shutil.copytree(_extension._CSRC.parent, root / "ops", ignore=shutil.ignore_patterns("__pycache__"))
    return root


def _start_load(clone: Path, cache: Path) -> subprocess.Popen:
    env = {**os.environ, _extension.CACHE_ENV: str(cache), "PYTHONPATH": str(clone), "OMP_NUM_THREADS": "1"}
    env.pop(_extension.VERBOSE_ENV, None)
    return subprocess.Popen([sys.executable, "-c", _LOAD_FROM_CLONE, str(clone)], cwd=clone, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _finish(process: subprocess.Popen) -> Path:
    out, err = process.communicate(timeout=1200)
    assert process.returncode == 0, err[-3000:]
    return Path(out.strip().splitlines()[-1])


def _ninja_outputs(directory: Path) -> list[str]:
    """The outputs ninja has built in ``directory``, one entry per build (its log appends one line each)."""
    lines = (directory / ".ninja_log").read_text().splitlines()
    return sorted(line.split("\t")[3] for line in lines if line and not line.startswith("#"))


@pytest.fixture(scope="module")
def two_clones(tmp_path_factory):
    """Two ranks of clone A start at once on an empty cache, then clone B loads: the state after each."""
    root = tmp_path_factory.mktemp("clones")
    clone_a, clone_b = _clone_ops(root / "a"), _clone_ops(root / "b")
    cache = root / "cache"
    ranks = [_start_load(clone_a, cache) for _ in range(2)]
    directories = {_finish(rank) for rank in ranks}
    assert len(directories) == 1
    directory = directories.pop()
    library = next(directory.glob(f"*{cpp_extension.LIB_EXT}"))

    def state():
        # torch rewrites build.ninja on every call of cpp_extension.load: its mtime shows one ran.
        build_file = directory / "build.ninja"
        return (library.stat().st_mtime_ns, (directory / ".ninja_log").read_text(), build_file.stat().st_mtime_ns,
                build_file.read_text())

    after_a = state()
    directory_b = _finish(_start_load(clone_b, cache))
    return {"clones": (clone_a, clone_b), "directory": directory, "directory_b": directory_b,
            "after_a": after_a, "after_b": state()}


@pytest.mark.slow
def test_ranks_started_together_build_once(two_clones):
    outputs = _ninja_outputs(two_clones["directory"])
    objects = sorted(Path(name).with_suffix(".o").name for name in _extension._CPU_SOURCES)
    assert [o for o in outputs if o.endswith(".o")] == objects
    assert len([o for o in outputs if o.endswith(cpp_extension.LIB_EXT)]) == 1


@pytest.mark.slow
def test_a_second_clone_loads_the_first_clones_build(two_clones):
    assert two_clones["directory_b"] == two_clones["directory"]
    # Library, ninja log and build file untouched: clone B ran neither cpp_extension.load nor ninja.
    assert two_clones["after_b"] == two_clones["after_a"]


@pytest.mark.slow
def test_the_build_file_names_neither_clone(two_clones):
    build_file = two_clones["after_a"][3]
    assert not any(str(clone) in build_file for clone in two_clones["clones"])
    assert str(_extension._CSRC) not in build_file
