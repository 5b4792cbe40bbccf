"""SyncBN and the BatchNorms of the temporal fusion under DDP (docs/distributed.md, "SyncBN").

``sync_bn='torch'`` (config key, or ``--cfg-options sync_bn=torch``) makes mmengine's Runner convert
every BatchNorm to ``torch.nn.SyncBatchNorm`` before wrapping in DDP. torch's SyncBatchNorm runs on
GPUs only: with a process group, its training forward raises on CPU tensors (pinned below, so that a
torch that lifts this shows up here), which is why ``prepare_distributed`` refuses ``sync_bn`` without
CUDA. That the synced statistics are those of the concatenated batch is checked on 2 GPUs only
(skipped on CPU); without sync the statistics are rank-local (test_ddp_training.py).
"""

from __future__ import annotations

import pytest
import torch
import torch.multiprocessing as mp
from mmengine.config import Config
from torch import nn

from perception.engine import SYNC_BN_NEEDS_CUDA, prepare_distributed
from tests.distributed.sync_bn_workers import free_port, sync_bn_on_gpus


def test_prepare_distributed_refuses_sync_bn_without_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ValueError, match="sync_bn needs CUDA"):
        prepare_distributed(Config(dict(launcher="pytorch", sync_bn="torch")))
    assert "SyncBatchNorm expected input tensor to be on GPU" in SYNC_BN_NEEDS_CUDA


def test_prepare_distributed_gives_cpu_runs_gloo_and_ddp_without_device_ids(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.distributed, "is_initialized", lambda: True)  # no process group from a test
    cfg = Config(dict(launcher="pytorch", env_cfg=dict(dist_cfg=dict(backend="nccl")), find_unused_parameters=True))
    prepare_distributed(cfg)
    assert cfg.env_cfg.dist_cfg.backend == "gloo"
    assert cfg.model_wrapper_cfg == dict(type="MMDistributedDataParallel", broadcast_buffers=False,
                                         find_unused_parameters=True, device_ids=None)
    bare = Config(dict(launcher="pytorch"))  # neither env_cfg nor a wrapper in the config
    prepare_distributed(bare)
    assert bare.env_cfg.dist_cfg.backend == "gloo" and bare.model_wrapper_cfg.device_ids is None
    untouched = Config(dict(launcher="none", env_cfg=dict(dist_cfg=dict(backend="nccl"))))
    prepare_distributed(untouched)
    assert untouched.env_cfg.dist_cfg.backend == "nccl" and "model_wrapper_cfg" not in untouched


def test_the_sync_bn_switch_converts_every_batchnorm_of_the_temporal_fusion():
    from mmengine.model import convert_sync_batchnorm

    from bev.temporal import ResidualConvFusion

    fusion = ResidualConvFusion(num_frames=2, embed_dims=8, inter_channels=4)
    count = sum(isinstance(m, nn.BatchNorm2d) for m in fusion.modules())
    assert count == 7  # 3 blocks x 2, and the projected shortcut of the first
    converted = convert_sync_batchnorm(fusion, "torch")  # what the Runner does for cfg.sync_bn = 'torch'
    assert sum(isinstance(m, nn.SyncBatchNorm) for m in converted.modules()) == count
    assert not any(type(m) is nn.BatchNorm2d for m in converted.modules())


def test_torch_sync_batchnorm_refuses_cpu_tensors_in_a_process_group(tmp_path):
    """torch checks the device before the world size, so a gloo group of this one process shows it."""
    torch.distributed.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    try:
        with pytest.raises(ValueError, match="SyncBatchNorm expected input tensor to be on GPU"):
            nn.SyncBatchNorm(3).train()(torch.randn(2, 3, 4, 4))
    finally:
        torch.distributed.destroy_process_group()


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="SyncBatchNorm needs 2 GPUs (NCCL) to synchronise")
def test_synced_running_statistics_are_those_of_the_concatenated_batch():
    mp.spawn(sync_bn_on_gpus, args=(2, free_port()), nprocs=2)
