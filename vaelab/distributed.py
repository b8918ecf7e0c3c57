"""Several processes, one model: torch.distributed with DistributedDataParallel.

Run with `torchrun --nproc-per-node N -m vaelab train ...` (or `vaelab train --nproc N`).
The rule: --batch-size is the global batch. Every rank draws the same permutation from the
shared seed each epoch; global batch k is perm[k*B:(k+1)*B], and rank r takes every W-th image
of it, starting at r, so the W shards are disjoint and equal (B must divide by W). Every rank
also draws the same N(0, I) noise for the whole global batch and keeps its rows, so W processes
follow the same maths as one process on the same global batches (up to float summation order).
Rank 0 alone writes the run folder and shows progress.
"""
import os
import subprocess
import sys
from dataclasses import dataclass

import torch
import torch.distributed as dist

from vaelab.errors import VaelabError


@dataclass(frozen=True)
class Ranks:
    rank: int = 0
    world: int = 1

    @property
    def main(self) -> bool:
        return self.rank == 0


def launched() -> bool:
    """True inside a process that torchrun started."""
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ


def setup(device: torch.device) -> tuple[Ranks, torch.device]:
    """Join the process group when launched by torchrun: nccl on CUDA, gloo on CPU."""
    if not launched():
        return Ranks(), device
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    if device.type == "cuda":
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    else:  # share the cores instead of oversubscribing them
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // int(os.environ.get("LOCAL_WORLD_SIZE", 1))))
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return Ranks(dist.get_rank(), dist.get_world_size()), device


def check_batch(batch_size: int, ranks: Ranks) -> None:
    if batch_size % ranks.world:
        raise VaelabError(f"--batch-size {batch_size} is the global batch and must divide by the "
                          f"{ranks.world} processes; use e.g. {batch_size // ranks.world * ranks.world or ranks.world}")


def sum_all(tensor: torch.Tensor, ranks: Ranks) -> torch.Tensor:
    """The sum of `tensor` over ranks (the tensor itself with one process)."""
    if ranks.world > 1:
        tensor = tensor.clone()
        dist.all_reduce(tensor)
    return tensor


def any_rank(flag: bool, device: torch.device, ranks: Ranks) -> bool:
    return bool(sum_all(torch.tensor(float(flag), device=device), ranks).item())


def share(value, ranks: Ranks):
    """Rank 0's `value` on every rank (a path, a small JSON-able object)."""
    if ranks.world == 1:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def wrap(model: torch.nn.Module, ranks: Ranks) -> torch.nn.Module:
    if ranks.world == 1:
        return model
    device = next(model.parameters()).device
    return torch.nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)


def teardown() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def launch(nproc: int, argv: list[str]) -> int:
    """`vaelab train --nproc N ...`: the same command under torch.distributed's launcher."""
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(nproc),
               "--standalone", "-m", "vaelab", *argv]
    return subprocess.run(command).returncode
