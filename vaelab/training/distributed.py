"""Several processes, one model: torch.distributed with DistributedDataParallel.

Run with `torchrun --nproc-per-node N -m vaelab train ...` (or `vaelab train --nproc N`).
The rule: --batch-size is the global batch. Every rank draws the same permutation from the
shared seed each epoch; global batch k is perm[k*B:(k+1)*B], and rank r takes every W-th image
of it, starting at r, so the W shards are disjoint and equal (B must divide by W). Every rank
also draws the same N(0, I) noise for the whole global batch and keeps its rows, so W processes
follow the same maths as one process on the same global batches (up to float summation order).
Rank 0 alone writes the run folder and shows progress.

A sweep under torchrun is the other way round: each rank trains runs of its own, whole
(`each_rank_alone`), and the ranks meet only at the end (vaelab/sweeps.py).
"""

import contextvars
import json
import os
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist

from vaelab.device import launched
from vaelab.errors import VaelabError
from vaelab.options import as_given


@dataclass(frozen=True)
class Ranks:
    rank: int = 0
    world: int = 1

    @property
    def main(self) -> bool:
        return self.rank == 0


ALONE = contextvars.ContextVar("vaelab_each_rank_alone", default=False)
SWEEP_TIMEOUT = timedelta(days=7)  # a rank that finished its runs waits for the others' this long


@contextmanager
def each_rank_alone():
    """Within it, a run trained (or resumed) in this process is this process's alone, even under
    torchrun: a sweep gives each rank runs of its own."""
    token = ALONE.set(True)
    try:
        yield
    finally:
        ALONE.reset(token)


def alone() -> bool:
    """Whether this process trains its runs by itself: not launched, or inside `each_rank_alone`."""
    return not launched() or ALONE.get()


def join(device: torch.device, timeout: timedelta | None = None) -> tuple[Ranks, torch.device]:
    """`setup` outside `each_rank_alone` (a sweep's ranks, which may wait long for each other: `timeout`)."""
    token = ALONE.set(False)
    try:
        return setup(device, timeout)
    finally:
        ALONE.reset(token)


def gather(value, ranks: Ranks) -> list:
    """Every rank's `value` (small, JSON-able), in rank order, on every rank: as JSON bytes in
    tensors vaelab holds, not torch's object collectives, whose tensors `settled` cannot wait for."""
    if ranks.world == 1:
        return [value]
    data = json.dumps(value).encode()
    sizes = [torch.zeros(1, dtype=torch.long, device=home()) for _ in range(ranks.world)]
    settled(dist.all_gather, sizes, torch.tensor([len(data)], device=home()))
    longest = max(int(n) for n in sizes)
    mine = torch.zeros(longest, dtype=torch.uint8)
    mine[: len(data)] = torch.frombuffer(bytearray(data), dtype=torch.uint8)  # JSON is never empty
    everyone = [torch.zeros(longest, dtype=torch.uint8, device=home()) for _ in range(ranks.world)]
    settled(dist.all_gather, everyone, mine.to(home()))
    return [json.loads(bytes(b[: int(n)].tolist())) for b, n in zip(everyone, sizes, strict=True)]


def settled(collective, *args, **kwargs) -> None:
    """`collective(*args, **kwargs)`, returning once the backend has let go of its tensors.

    Why: gloo runs a collective on a worker thread, which drops its reference to the tensors a
    moment after the caller has the result (measured: in 1.5-4.5 % of all_reduce calls on two
    CPU processes). If Python has dropped a tensor by then, the worker must take the GIL to free
    its Python object, and when that falls in the interpreter's shutdown the process dies with
    "terminate called without an active exception" (SIGABRT; torchrun then stops every rank). So
    the caller keeps its tensors until the worker's references are gone, and the worker never
    needs the GIL. (A process group that DistributedDataParallel used is never freed, so its
    threads outlive `destroy_process_group` and are still running at shutdown.) Only on gloo, where
    it was seen: nccl's watchdog keeps a finished work for a while, and waiting for it every 25 steps
    would cost a GPU run more than it is worth unmeasured."""
    if dist.get_backend() != "gloo":
        collective(*args, **kwargs)
        return
    tensors = [t for a in args for t in (a if isinstance(a, list) else [a]) if isinstance(t, torch.Tensor)]
    counts = [t._use_count() for t in tensors]
    collective(*args, **kwargs)
    deadline = time.monotonic() + 60
    while any(t._use_count() > n for t, n in zip(tensors, counts, strict=True)):
        if time.monotonic() > deadline:  # never seen; hold them for the life of the process instead
            HELD.extend(tensors)
            return
        time.sleep(0.0002)


HELD: list = []


def home() -> torch.device:
    """Where the process group's tensors live: this rank's GPU under nccl, else the CPU."""
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def setup(device: torch.device, timeout: timedelta | None = None) -> tuple[Ranks, torch.device]:
    """Join the process group when launched by torchrun: nccl on CUDA, gloo on CPU."""
    if alone():
        return Ranks(), device
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    if device.type == "cuda":
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    else:  # share the cores instead of oversubscribing them
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // int(os.environ.get("LOCAL_WORLD_SIZE", 1))))
    die_with_parent(signal.SIGTERM)  # a worker whose launcher was killed stops (with a checkpoint)
    if not dist.is_initialized():
        options = {} if timeout is None else {"timeout": timeout}
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo", **options)
    return Ranks(dist.get_rank(), dist.get_world_size()), device


def check_batch(batch_size: int, ranks: Ranks) -> None:
    if batch_size % ranks.world:
        raise VaelabError(
            f"{as_given('batch_size', batch_size)} is the global batch and must divide by the "
            f"{ranks.world} processes; use e.g. {batch_size // ranks.world * ranks.world or ranks.world}"
        )


def sum_all(tensor: torch.Tensor, ranks: Ranks) -> torch.Tensor:
    """The sum of `tensor` over ranks (the tensor itself with one process)."""
    if ranks.world > 1:
        tensor = tensor.clone()
        settled(dist.all_reduce, tensor)
    return tensor


def any_rank(flag: bool, device: torch.device, ranks: Ranks) -> bool:
    return bool(sum_all(torch.tensor(float(flag), device=device), ranks).item())


def share(value, ranks: Ranks):
    """Rank 0's `value` on every rank (a path, a small JSON-able object)."""
    return gather(value if ranks.main else None, ranks)[0]


def wait_for_all(ranks: Ranks) -> None:
    """Return when every rank has come here (at once with one process)."""
    if ranks.world > 1:
        dist.barrier()


def wrap(model: torch.nn.Module, ranks: Ranks) -> torch.nn.Module:
    if ranks.world == 1:
        return model
    device = next(model.parameters()).device
    return torch.nn.parallel.DistributedDataParallel(
        model, device_ids=[device.index] if device.type == "cuda" else None
    )


def teardown() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def launch(nproc: int, argv: list[str]) -> int:
    """`vaelab train --nproc N ...`: the same command under torch.distributed's launcher.

    SIGINT and SIGTERM sent to this process are passed on to the launcher, which passes them to
    every worker (each writes its checkpoint and stops); this process waits for them and exits
    with their status. Should this process die without a word (kill -9), the kernel sends the
    launcher SIGTERM (Linux), and each worker gets SIGTERM when the launcher dies, so no worker
    goes on writing the run folder alone."""
    command = [
        sys.executable,
        "-m",
        "vaelab.training.distributed",
        "--nproc-per-node",
        str(nproc),
        "--standalone",
        "-m",
        "vaelab",
        *argv,
    ]
    child = subprocess.Popen(command, preexec_fn=lambda: die_with_parent(signal.SIGTERM))
    forward = lambda signum, _frame: child.send_signal(signum)  # noqa: E731
    previous = {s: signal.signal(s, forward) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        code = child.wait()
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
    return code if code >= 0 else 128 - code


def die_with_parent(signum: int) -> None:
    """Ask the kernel to send this process `signum` when its parent dies (Linux; elsewhere nothing)."""
    if sys.platform != "linux":
        return
    import ctypes

    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, int(signum))  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def torchrun(argv: list[str]) -> int:
    """torch.distributed.run with `argv`, its exit status, and no launcher traceback: each worker
    prints its own `vaelab: error:` line; a worker killed by a signal gets one line here."""
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import main

    try:
        main(argv)
    except SignalException as e:  # the launcher was asked to stop; the workers have stopped
        return 128 + int(e.sigval)
    except ChildFailedError as e:
        rank, failure = e.get_first_failure()
        if failure.exitcode < 0:
            print(
                f"vaelab: error: the process of rank {rank} ended: {failure.message}; the launcher stopped "
                f"the others. Continue from the last checkpoint with vaelab train --resume RUN",
                file=sys.stderr,
            )
        return failure.exitcode if failure.exitcode > 0 else 128 - failure.exitcode
    return 0


if __name__ == "__main__":  # the launcher that `launch` starts
    raise SystemExit(torchrun(sys.argv[1:]))
