"""The GPU ranks of test_sync_bn.py, in a module of their own so that the spawned processes import only
torch (not the project's packages)."""

from __future__ import annotations

import socket

import torch
from torch import nn


def free_port() -> int:
    """A TCP port free on this machine now (for the process group's rendezvous)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _init(rank: int, world_size: int, port: int, backend: str) -> None:
    torch.distributed.init_process_group(backend, init_method=f"tcp://127.0.0.1:{port}", rank=rank,
                                         world_size=world_size)


def sync_bn_on_gpus(rank: int, world_size: int, port: int) -> None:
    """Rank ``rank`` normalises its 2 samples of a batch of 2 x world_size; its SyncBatchNorm must end
    with the statistics of one BatchNorm over the whole batch, and give that BatchNorm's output."""
    torch.cuda.set_device(rank)
    _init(rank, world_size, port, "nccl")
    try:
        batch = torch.randn(2 * world_size, 3, 5, 5, generator=torch.Generator().manual_seed(0))
        synced = nn.SyncBatchNorm(3).cuda().train()
        out = synced(batch[2 * rank:2 * rank + 2].cuda())
        single = nn.BatchNorm2d(3).train()
        expected = single(batch)
        torch.testing.assert_close(synced.running_mean.cpu(), single.running_mean, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(synced.running_var.cpu(), single.running_var, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(out.cpu(), expected[2 * rank:2 * rank + 2], rtol=1e-5, atol=1e-5)
    finally:
        torch.distributed.destroy_process_group()
