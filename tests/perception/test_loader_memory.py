"""The loader's memory (perception/data/memory.py, docs/data.md "Loader speed"), judged by the kernel's own
count of minor page faults: with freed memory retained, re-allocating an image-sized block faults no
pages in again; a shareable buffer arrives with its pages already present; LoadMultiViewImages sets the
allocator unless told not to."""

from __future__ import annotations

import platform
import resource
import subprocess
import sys
import textwrap

import pytest
import torch

import perception.data.transforms_bev as transforms_bev
from perception.data.memory import retain_freed_memory, worker_shareable_empty

from .test_reduced_decode import camera_results, save_jpeg, texture

IMAGE_BYTES = 1600 * 900 * 3  # one decoded nuScenes camera image
ON_GLIBC = platform.libc_ver()[0] == "glibc"


def _kernel_at_least(major: int, minor: int) -> bool:
    try:
        found = tuple(int(p) for p in platform.release().split("-")[0].split(".")[:2])
    except ValueError:
        return False
    return found >= (major, minor)


def _faults_per_reallocation(retain: bool) -> float:
    """Minor page faults per image-sized block when a sample's 12 camera images are allocated, filled and
    freed together, averaged over 10 samples after a first, in a fresh interpreter (the setting is per
    process)."""
    script = textwrap.dedent(f"""
        import resource, numpy as np
        from perception.data.memory import retain_freed_memory
        if {retain}:
            assert retain_freed_memory()
        def faults():
            return resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        def sample():
            blocks = [np.empty({IMAGE_BYTES}, np.uint8) for _ in range(12)]
            for block in blocks:
                block.fill(1)
        sample()
        start = faults()
        for _ in range(10):
            sample()
        print((faults() - start) / 120)
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    return float(out.stdout.strip())


@pytest.mark.skipif(not ON_GLIBC, reason="mallopt is glibc's")
def test_retained_memory_is_reused_without_page_faults():
    pages = IMAGE_BYTES / 4096
    # glibc's default gives much of a sample's freed image memory back to the system, so the next sample
    # faults it in again (about half the pages here); retained, none.
    assert _faults_per_reallocation(retain=False) > 0.25 * pages
    assert _faults_per_reallocation(retain=True) < 0.02 * pages
    assert retain_freed_memory() and retain_freed_memory()  # once per process, then a no-op


@pytest.mark.skipif(not _kernel_at_least(5, 14), reason="MADV_POPULATE_WRITE needs Linux >= 5.14")
def test_shareable_buffer_arrives_with_its_pages():
    buffer = worker_shareable_empty((64, 1024, 1024), torch.uint8)  # 64 MB: beyond any heap reuse
    allocated = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    buffer.fill_(3)
    written = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    assert written - allocated < 0.02 * buffer.numel() / 4096  # writing faults (almost) nothing in
    assert int(buffer[-1, -1, -1]) == 3
    assert not buffer.is_shared()  # outside a DataLoader worker: an ordinary tensor


@pytest.mark.parametrize("retain", [True, False])
def test_load_multi_view_images_sets_the_allocator_unless_told_not_to(tmp_path, monkeypatch, retain):
    calls = []
    monkeypatch.setattr(transforms_bev, "retain_freed_memory", lambda: calls.append(1) or True)
    path = save_jpeg(tmp_path / "cam.jpg", texture(64, 32))
    load = transforms_bev.LoadMultiViewImages(num_workers=1, retain_freed_memory=retain)
    for _ in range(2):
        out = load(camera_results([path], [(64, 32)]))
    assert out["frames"][0]["imgs"][0].shape == (32, 64, 3)
    assert len(calls) == (1 if retain else 0)  # once per process, with its thread pool

