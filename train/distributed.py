"""torchrun / DDP plumbing and deterministic seeding.

Started by ``torchrun --nproc_per_node N -m train.fit ...`` the environment carries RANK,
WORLD_SIZE and LOCAL_RANK; we join a process group (gloo on CPU, nccl on CUDA). Rank 0 alone
writes files. With no such variables the run is a single process and nothing here does anything.
"""

from __future__ import annotations

import os
import random
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.distributed as dist

__all__ = ["DistInfo", "all_gather_object", "barrier", "cleanup", "seed_everything", "setup"]


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def _pick_device(requested: str, local_rank: int) -> torch.device:
    if requested == "auto":
        requested = "cuda" if torch.cuda.is_available() else "cpu"
    if requested.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ValueError("device 'cuda' requested but no CUDA GPU is visible; use --device cpu")
        if requested == "cuda":
            requested = f"cuda:{local_rank}"
    return torch.device(requested)


def setup(requested_device: str = "auto") -> DistInfo:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    device = _pick_device(requested_device, local)
    if world > 1 and not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group(backend=backend)
    return DistInfo(rank, world, local, device)


def barrier(info: DistInfo) -> None:
    if info.enabled:
        dist.barrier()


def all_gather_object(info: DistInfo, obj: object) -> list[object]:
    if not info.enabled:
        return [obj]
    out: list[object] = [None] * info.world_size
    dist.all_gather_object(out, obj)
    return out


def cleanup(info: DistInfo) -> None:
    if info.enabled and dist.is_initialized():
        dist.destroy_process_group()


def seed_everything(seed: int, epoch: int = 0, rank: int = 0) -> int:
    """Seed python, numpy and torch from (seed, epoch, rank).

    Seeding at every epoch start (not once) is what makes ``--resume`` exact: epoch e draws the
    same random numbers whether or not the process restarted before it.
    """
    s = (seed * 1_000_003 + epoch * 7_919 + rank * 104_729) % (2**31 - 1)
    random.seed(s)
    np.random.seed(s)  # noqa: NPY002 -- legacy global state is what third-party augmentations read
    torch.manual_seed(s)
    return s
