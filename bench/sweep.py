"""Wall time of N runs trained as one batched model, against the same N runs one after another and
against one run alone, same data, same process.

Every row times real calls: `train_batched` for the batch (seeds 0..N-1, each writing its run
folder) and `train` for each lone run, epochs and evaluation included. The contenders alternate
within each repeat, so a change in the machine's load falls on all of them.

    python bench/sweep.py [--dataset mnist-sample] [--images 1024] [--test-images 1000] [--models mlp,conv]
                          [--batches 32,128] [--runs 1,2,4,8,16] [--epochs 1] [--repeats 1]
                          [--sequential-up-to 4] [--device auto] [--threads 0] [--steps]

--steps times one training step instead (forward, loss, backward, Adam of N runs batched, against
the N runs' steps one after another, on random images), alternating the two many times: on a
loaded machine this separates the step from the noise that whole runs carry.

Prints the machine, versions, seeds and load, then one markdown row per model x batch x N: the
median seconds of one run alone, of N runs one after another (measured for N up to
--sequential-up-to, above that N x the lone run, marked *), of N runs batched, and the two ratios
the GPU goals name (batched / alone) and the speed-up over running them one after another.
"""

import argparse
import logging
import os
import platform
import statistics
import tempfile
import time
from dataclasses import replace

import torch

from vaelab.config import TrainConfig
from vaelab.data import ImageData, load_dataset
from vaelab.device import describe_device, resolve_device
from vaelab.training import train, train_batched


def subset(data: ImageData, images: int, test_images: int) -> ImageData:
    """The first `images` training images and `test_images` test images (all when 0)."""
    n, m = images or len(data.train_x), test_images or len(data.test_x)
    return ImageData(
        data.name,
        data.train_x[:n],
        data.train_y[:n],
        data.test_x[:m],
        data.test_y[:m],
        data.classes,
        data.source,
    )


def timed(fn) -> float:
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    start = time.perf_counter()
    fn()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.perf_counter() - start


SCRATCH = "/dev/shm" if os.path.isdir("/dev/shm") else None  # run folders in memory: a shared disk's fsync is noise


def alone(cfg: TrainConfig, data: ImageData, seed: int) -> float:
    with tempfile.TemporaryDirectory(dir=SCRATCH) as out:
        return timed(lambda: train(replace(cfg, seed=seed), out=out, overwrite=True, progress=False, data=data))


def batched(cfg: TrainConfig, data: ImageData, n: int) -> float:
    with tempfile.TemporaryDirectory(dir=SCRATCH) as out:
        cfgs = [replace(cfg, seed=s) for s in range(n)]
        outs = [f"{out}/seed-{s}" for s in range(n)]
        return timed(lambda: train_batched(cfgs, [{}] * n, outs, progress=False, data=data))


def step_ms(model: str, batch: int, n: int, device, repeats: int) -> tuple[float, float]:
    """Median milliseconds of one training step (forward, loss, backward, Adam) of n runs: batched
    (stack.batched_step) and one after another (loop.train_step), alternating so load falls on both."""
    from vaelab.losses import Objective
    from vaelab.models import build_model, make_config
    from vaelab.training.loop import train_step
    from vaelab.training.stack import Adams, Stack, batched_step

    config = make_config(model, (1, 28, 28), 10)
    models = [build_model(model, config).to(device) for _ in range(n)]
    adams = [torch.optim.Adam(m.parameters(), fused=True) for m in models]
    x = torch.rand(n, batch, 1, 28, 28, device=device)
    y, eps = torch.randint(0, 10, (n, batch), device=device), torch.randn(n, batch, config.latent_dim, device=device)
    lone = [[build_model(model, config).to(device) for _ in range(n)]]
    lone_adams = [torch.optim.Adam(m.parameters(), fused=True) for m in lone[0]]
    stack, objective, weights = Stack(models), Objective(), torch.full((n,), 1000.0, device=device)

    def together():
        batched_step(stack, Adams(adams), (x, y, eps, None), [1.0] * n, objective, [None] * n, weights)

    def apart():
        for r, (m, a) in enumerate(zip(lone[0], lone_adams, strict=True)):
            train_step(m, a, (x[r], y[r], eps[r], None), 1.0, objective, None)

    times = {together: [], apart: []}
    for fn in (together, apart):
        fn()  # warm-up
    for _ in range(repeats):
        for fn in (together, apart):
            times[fn].append(timed(lambda fn=fn: [fn() for _ in range(3)]) / 3 * 1000)
    return statistics.median(times[together]), statistics.median(times[apart])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dataset", default="mnist-sample")
    p.add_argument("--images", type=int, default=1024, help="training images per epoch (0: all)")
    p.add_argument("--test-images", type=int, default=1000, help="test images scored each epoch (0: all)")
    p.add_argument("--models", default="mlp,conv")
    p.add_argument("--batches", default="32,128")
    p.add_argument("--runs", default="1,2,4,8,16")
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--repeats", type=int, default=1)
    p.add_argument("--sequential-up-to", type=int, default=4, help="above this N, sequential is N x alone")
    p.add_argument("--device", default="auto")
    p.add_argument("--steps", action="store_true", help="time single training steps instead of whole runs")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: as set by OMP_NUM_THREADS)")
    args = p.parse_args()
    logging.getLogger("vaelab").setLevel(logging.WARNING)  # no line per epoch
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    data = subset(load_dataset(args.dataset), args.images, args.test_images)
    print(f"device: {describe_device(device)}; python {platform.python_version()}, torch {torch.__version__}")
    print(f"data: {args.dataset}, {len(data.train_x)} training images, {len(data.test_x)} test images")
    print(f"{args.epochs} epoch(s) per run, seeds 0..N-1, {args.repeats} repeat(s); load {os.getloadavg()}")
    print()
    if args.steps:
        print("One training step, milliseconds (median of --repeats x 3 steps, contenders alternating):\n")
        print("| model | batch | N | N batched ms | N one after another ms | speed-up |")
        print("|---|---:|---:|---:|---:|---:|")
        for model in args.models.split(","):
            for batch in map(int, args.batches.split(",")):
                for n in map(int, args.runs.split(",")):
                    together, apart = step_ms(model, batch, n, device, args.repeats)
                    print(
                        f"| {model} | {batch} | {n} | {together:.1f} | {apart:.1f} | {apart / together:.2f} |",
                        flush=True,
                    )
        print(f"\nload at the end {os.getloadavg()}")
        return
    print("| model | batch | N | alone s | N one after another s | N batched s | batched / alone | speed-up |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for model in args.models.split(","):
        for batch in map(int, args.batches.split(",")):
            cfg = TrainConfig(model=model, dataset=args.dataset, epochs=args.epochs, batch_size=batch)
            cfg = replace(cfg, device=args.device)
            alone(cfg, data, 0)  # warm-up: first-call costs (allocator, kernels, vmap's first trace)
            batched(cfg, data, 2)
            for n in map(int, args.runs.split(",")):
                lone, sequential, together = [], [], []
                for _ in range(args.repeats):
                    lone.append(alone(cfg, data, 0))
                    if n <= args.sequential_up_to:
                        sequential.append(sum(alone(cfg, data, s) for s in range(n)))
                    together.append(batched(cfg, data, n))
                t_alone, t_batched = statistics.median(lone), statistics.median(together)
                t_seq = statistics.median(sequential) if sequential else n * t_alone
                mark = "" if sequential else "*"
                print(
                    f"| {model} | {batch} | {n} | {t_alone:.2f} | {t_seq:.2f}{mark} | {t_batched:.2f} "
                    f"| {t_batched / t_alone:.2f} | {t_seq / t_batched:.2f} |",
                    flush=True,
                )
    print(f"\nload at the end {os.getloadavg()}")


if __name__ == "__main__":
    main()
