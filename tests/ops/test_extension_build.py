"""The CUDA build's architecture flags, checked on CPU: the right ``-gencode`` flags for the visible
GPUs, none of torch's own next to them, and a build that never writes the process environment."""

from __future__ import annotations

import os

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
