"""Multi-process training on PyTorch's own engine: torchrun sets the environment, DDP syncs gradients.

`torchrun --nproc_per_node N -m deeprecipe train ...` (or `deeprecipe train --devices N`, which launches
exactly that) starts N processes. Each reads RANK / WORLD_SIZE / LOCAL_RANK, joins a process group (gloo on
CPU, NCCL on GPUs), trains its own shard of every epoch, and rank 0 alone writes logs and checkpoints.
"""
from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel as DDP

from ..errors import DeepRecipeError


@dataclass(frozen=True)
class DistContext:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


SINGLE = DistContext()


def context_from_env() -> DistContext:
    """The process's place in a torchrun job (single process when WORLD_SIZE is absent or 1)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return SINGLE
    return DistContext(int(os.environ.get("RANK", "0")), world, int(os.environ.get("LOCAL_RANK", "0")))


def init_distributed(device_type: str) -> DistContext:
    """Join the process group torchrun prepared; a no-op for a single process."""
    ctx = context_from_env()
    if ctx.enabled and not dist.is_initialized():
        backend = "nccl" if device_type == "cuda" else "gloo"
        if device_type == "cuda":
            torch.cuda.set_device(ctx.local_rank)
        dist.init_process_group(backend=backend)
    return ctx


def device_for(ctx: DistContext, device: torch.device) -> torch.device:
    """Each rank gets its own GPU (LOCAL_RANK); CPU ranks share the CPU."""
    if device.type == "cuda" and ctx.enabled:
        return torch.device("cuda", ctx.local_rank)
    return device


def wrap_model(model: torch.nn.Module, ctx: DistContext, device: torch.device, sync_bn: bool = False) -> torch.nn.Module:
    if not ctx.enabled:
        return model
    if sync_bn:
        model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
    ids = [device.index] if device.type == "cuda" else None
    return DDP(model, device_ids=ids)


def all_reduce_sum(values: list[float], ctx: DistContext, device: torch.device) -> list[float]:
    """Sum numbers over ranks (epoch loss/correct/seen totals)."""
    if not ctx.enabled:
        return values
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t.tolist()


def broadcast_str(value: str | None, ctx: DistContext) -> str | None:
    """Rank 0's value on every rank (e.g. the run folder name chosen from the clock)."""
    if not ctx.enabled:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def shutdown(ctx: DistContext) -> None:
    if ctx.enabled and dist.is_initialized():
        dist.destroy_process_group()


def launch(devices: int, argv: list[str]) -> int:
    """`deeprecipe train --devices N ...` → `torchrun --standalone --nproc_per_node N -m deeprecipe train ...`."""
    if devices < 1:
        raise DeepRecipeError(f"--devices {devices} must be at least 1", "e.g. --devices 2")
    if torch.cuda.is_available() and devices > torch.cuda.device_count():
        raise DeepRecipeError(f"--devices {devices} but only {torch.cuda.device_count()} GPU(s) are visible",
                              f"use --devices {torch.cuda.device_count()} or fewer")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={devices}",
           "-m", "deeprecipe", *argv]
    return subprocess.call(cmd)
