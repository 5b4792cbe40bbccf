"""Memory of the loader's images: tensors that leave a DataLoader worker without a copy, and an allocator
that reuses freed image buffers instead of faulting fresh pages in (docs/data.md, "Loader speed")."""

from __future__ import annotations

import ctypes
import ctypes.util
import math
import os

import torch

# glibc's mallopt parameters (malloc.h).
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
# glibc's largest accepted mmap threshold on 64-bit (HEAP_MAX_SIZE / 2): a 1600x900 RGB image is 4.3 MB.
MMAP_THRESHOLD = 32 << 20
# Freed memory kept at the top of the heap before it goes back to the system: a 2-frame, 6-camera
# nuScenes sample passes about 200 MB of images through decode, resize, jitter and pack.
TRIM_THRESHOLD = 512 << 20
_retained_in: int | None = None  # the process (pid) whose allocator is set
_MADV_POPULATE_WRITE = 23  # linux/mman.h
_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
_LIBC: ctypes.CDLL | None | bool = None  # the C library once loaded; False where it cannot be


def worker_shareable_empty(shape: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
    """An uninitialised CPU tensor, its pages already faulted in; inside a DataLoader worker it lives in
    shared memory, so it reaches the main process without the copy torch makes of ordinary tensors (as
    torch's ``default_collate`` does for its batches). Outside a worker it is an ordinary tensor."""
    if torch.utils.data.get_worker_info() is None:
        out = torch.empty(shape, dtype=dtype)
    else:
        storage = torch.empty(0, dtype=dtype)._typed_storage()._new_shared(math.prod(shape), device="cpu")
        out = torch.empty(0, dtype=dtype).set_(storage).view(shape)
    _populate(out)
    return out


def _libc_function(name: str, argtypes: tuple, restype=ctypes.c_int):
    """The C library's function ``name`` with its signature set, or None where the library cannot be
    loaded or has no such function (musl has no ``mallopt``). The library is loaded once."""
    global _LIBC
    if _LIBC is None:
        try:
            _LIBC = ctypes.CDLL(ctypes.util.find_library("c"))
        except (OSError, TypeError):
            _LIBC = False
    function = getattr(_LIBC, name, None) if _LIBC else None
    if function is not None:
        function.argtypes, function.restype = argtypes, restype
    return function


def _populate(tensor: torch.Tensor) -> None:
    """Fault a fresh mapping's pages in with one call (Linux >= 5.14 ``MADV_POPULATE_WRITE``) rather than
    one trap a page as it is first written; nothing happens where the call is unknown."""
    madvise = _libc_function("madvise", (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int))
    if madvise is not None and tensor.numel():
        start = tensor.data_ptr() & ~(_PAGE - 1)
        madvise(start, tensor.data_ptr() + tensor.numel() * tensor.element_size() - start, _MADV_POPULATE_WRITE)


def retain_freed_memory() -> bool:
    """Make glibc's malloc serve image-sized blocks (up to ``MMAP_THRESHOLD``) from its heap and keep up
    to ``TRIM_THRESHOLD`` of freed memory, once per process. By default glibc maps most such blocks
    freshly and unmaps them when freed, so every decoded, resized or jittered image pays the kernel's page
    faults and zeroing again: about 20 ms of CPU per 37 MB, a third of a nuScenes sample's loading.
    The cost is resident memory that stays at its peak. Returns False where the C library has no
    ``mallopt`` (not glibc); nothing changes there."""
    global _retained_in
    if _retained_in == os.getpid():
        return True
    mallopt = _libc_function("mallopt", (ctypes.c_int, ctypes.c_int))
    if mallopt is None:
        return False
    # The explicit mmap threshold also stops glibc's dynamic one, which the trim setting alone would freeze
    # at its 128 KiB start.
    if mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD) != 1 or mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD) != 1:
        return False
    _retained_in = os.getpid()
    return True
