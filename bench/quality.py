"""Test -ELBO of vaelab against a plain PyTorch loop with the same architecture, same data, one scorer.

    PYTHONPATH=. python3 bench/quality.py [--models mlp,conv,conv16,cvae] [--datasets fashion-mnist,mnist-sample]
                                          [--epochs 2,10] [--seeds 0,1,2] [--threads 1] [--device cpu]

The plain loop is the one a course notebook writes: a DataLoader over a TensorDataset of float
images (shuffled, last partial batch kept), the network built here in plain PyTorch with
PyTorch's default initialisation, sigmoid then binary cross-entropy (summed over pixels,
averaged over the batch) plus the analytic KL, Adam at lr 1e-3, no warm-up. vaelab's contender
is `vaelab.training.train` with vaelab's defaults (only model, data set, seed, batch size and
device are set). The networks have the same layers and parameter counts (checked at start).

Both contenders run for the largest --epochs, alternating epoch by epoch. vaelab trains one
epoch per call (train, then resume, which continues bit for bit), so its model after every epoch
can be scored; a run stopped after E epochs is the same as an E-epoch run, since neither loop
looks at the total. One function scores both (`neg_elbo`): the mean over the test images of
[binary cross-entropy summed over the pixels + analytic KL to N(0, I)], z = mu + sigma * eps with
eps drawn once from a fixed seed, the same for every contender, model and epoch.

Prints the machine, versions and seeds, then (1) the test -ELBO after each --epochs value, mean
± sd over the seeds, and (2) time to quality: per seed, the training seconds (the steps only, not
the scoring) each contender needs until its test -ELBO is at or below the plain loop's value
after the last epoch. vaelab's seconds are those it records per epoch (metrics.jsonl); on a GPU
each resumed epoch also holds its graph capture.
"""

import argparse
import contextlib
import io
import os
import platform
import statistics
import subprocess
import tempfile
import time
from math import prod

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from vaelab.config import TrainConfig
from vaelab.data import load_dataset
from vaelab.models import build_model, make_config
from vaelab.runs import load_model, read_metrics
from vaelab.training import resume, train

SCORE_SEED = 20_240_601  # the scorer's eps, apart from every training seed
UNUSED_KL = 0.05  # nats per image: below this the decoder gets next to nothing from z
MODELS = {  # bench name: (vaelab model, its options)
    "mlp": ("mlp", {}),
    "conv": ("conv", {}),  # Dense 14
    "conv16": ("conv", {"dense_dim": 16}),
    "cvae": ("cvae", {}),
}


# ---- the plain loop's networks, written out in PyTorch (default initialisation) ----------------


class PlainMLP(nn.Module):
    """784 -> 512 ReLU -> mu, logvar; z -> 512 ReLU -> 784 logits."""

    def __init__(self, shape, latent_dim=2, hidden=512):
        super().__init__()
        self.shape = shape
        self.hidden = nn.Linear(prod(shape), hidden)
        self.mu, self.logvar = nn.Linear(hidden, latent_dim), nn.Linear(hidden, latent_dim)
        self.dec_hidden = nn.Linear(latent_dim, hidden)
        self.out = nn.Linear(hidden, prod(shape))

    def encode(self, x, y=None):
        h = torch.relu(self.hidden(x.flatten(1)))
        return self.mu(h), self.logvar(h)

    def decode(self, z, y=None):
        return self.out(torch.relu(self.dec_hidden(z))).view(-1, *self.shape)


class PlainConv(nn.Module):
    """The Keras example's VAE: Conv 32 s2, Conv 64 s2, Dense `dense` ReLU, mu, logvar; Dense
    7x7x64, ConvT 64 s2, ConvT 32 s2, ConvT 1. With `classes`, the CVAE: a Dense from the one-hot
    label added after the first convolution, and the label concatenated to z."""

    def __init__(self, shape, latent_dim=2, dense=14, classes=0):
        super().__init__()
        c, h, w = shape
        self.classes, self.first, self.bottom = classes, (32, h // 2, w // 2), (64, h // 4, w // 4)
        self.conv1 = nn.Conv2d(c, 32, 3, stride=2, padding=1)
        self.conv2 = nn.Conv2d(32, 64, 3, stride=2, padding=1)
        self.label = nn.Linear(classes, prod(self.first)) if classes else None
        self.dense = nn.Linear(prod(self.bottom), dense)
        self.mu, self.logvar = nn.Linear(dense, latent_dim), nn.Linear(dense, latent_dim)
        self.dec_dense = nn.Linear(latent_dim + classes, prod(self.bottom))
        self.deconv1 = nn.ConvTranspose2d(64, 64, 3, stride=2, padding=1, output_padding=1)
        self.deconv2 = nn.ConvTranspose2d(64, 32, 3, stride=2, padding=1, output_padding=1)
        self.out = nn.ConvTranspose2d(32, c, 3, stride=1, padding=1)

    def encode(self, x, y=None):
        h = torch.relu(self.conv1(x))
        if self.classes:
            h = h + self.label(F.one_hot(y, self.classes).float()).view(-1, *self.first)
        h = torch.relu(self.dense(torch.relu(self.conv2(h)).flatten(1)))
        return self.mu(h), self.logvar(h)

    def decode(self, z, y=None):
        if self.classes:
            z = torch.cat([z, F.one_hot(y, self.classes).float()], dim=1)
        h = torch.relu(self.dec_dense(z)).view(-1, *self.bottom)
        return self.out(torch.relu(self.deconv2(torch.relu(self.deconv1(h)))))


def plain_network(name: str, data) -> nn.Module:
    if name == "mlp":
        return PlainMLP(data.image_shape)
    return PlainConv(
        data.image_shape, dense=16 if name == "conv16" else 14, classes=data.num_classes if name == "cvae" else 0
    )


# ---- the scorer: one function for every contender ------------------------------------------------


@torch.no_grad()
def neg_elbo(model, data, device, batch: int = 1000) -> tuple[float, float]:
    """(mean test -ELBO, mean test KL) in nats per image; eps fixed by SCORE_SEED."""
    was_training = model.training
    model.eval()
    latent_dim = model.encode(to_float(data.test_x[:1]).to(device), data.test_y[:1].to(device))[0].shape[1]
    eps = torch.randn(len(data.test_x), latent_dim, generator=torch.Generator().manual_seed(SCORE_SEED))
    total = kl_total = 0.0
    for start in range(0, len(data.test_x), batch):
        x = to_float(data.test_x[start : start + batch]).to(device)
        y = data.test_y[start : start + batch].to(device)
        mu, logvar = model.encode(x, y)
        z = mu + eps[start : start + batch].to(device) * torch.exp(0.5 * logvar)
        recon = F.binary_cross_entropy_with_logits(model.decode(z, y), x, reduction="none").flatten(1).sum(1)
        kl = -0.5 * (1 + logvar - mu.pow(2) - logvar.exp()).sum(1)  # Kingma & Welling 2014, app. B
        total += (recon + kl).sum().item()
        kl_total += kl.sum().item()
    model.train(was_training)
    return total / len(data.test_x), kl_total / len(data.test_x)


def to_float(x_uint8: torch.Tensor) -> torch.Tensor:
    return x_uint8.float() / 255


# ---- the two contenders, one epoch per next() ------------------------------------------------------


def plain_loop(name: str, data, seed: int, batch_size: int, device):
    """Yields (model, training seconds) after each epoch of the notebook loop."""
    torch.manual_seed(seed)
    model = plain_network(name, data).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    loader = DataLoader(TensorDataset(to_float(data.train_x), data.train_y), batch_size=batch_size, shuffle=True)
    while True:
        start = time.perf_counter()
        for x, y in loader:
            x, y = x.to(device), y.to(device)
            mu, logvar = model.encode(x, y)
            z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)
            recon = F.binary_cross_entropy(torch.sigmoid(model.decode(z, y)), x, reduction="sum") / len(x)
            kl = -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp()) / len(x)
            optimizer.zero_grad()
            (recon + kl).backward()
            optimizer.step()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        yield model, time.perf_counter() - start


def vaelab_loop(name: str, data, dataset: str, seed: int, batch_size: int, device, folder: str):
    """Yields (model, training seconds) after each epoch of `vaelab train` with its defaults."""
    model_name, options = MODELS[name]
    cfg = TrainConfig(model=model_name, dataset=dataset, epochs=1, seed=seed, batch_size=batch_size, device=device.type)
    epoch = 0
    while True:
        epoch += 1
        with contextlib.redirect_stdout(io.StringIO()):  # its per-epoch lines would break the tables
            if epoch == 1:
                train(cfg, options, out=folder, overwrite=True, progress=False)
            else:
                resume(folder, epochs=epoch, progress=False)
        images = -(-len(data.train_x) // batch_size) * batch_size  # vaelab's batches are all whole
        model, _ = load_model(folder, device)
        yield model, images / read_metrics(folder)[-1]["images_per_second"]


def race(name: str, data, dataset: str, seed: int, epochs: int, batch_size: int, device) -> dict:
    """Both contenders for `epochs`, alternating; per contender the list of (score, kl, seconds)."""
    with tempfile.TemporaryDirectory() as folder:
        loops = {
            "plain": plain_loop(name, data, seed, batch_size, device),
            "vaelab": vaelab_loop(name, data, dataset, seed, batch_size, device, folder),
        }
        curves = {who: [] for who in loops}
        for _ in range(epochs):
            for who, loop in loops.items():
                model, seconds = next(loop)
                curves[who].append((*neg_elbo(model, data, device), seconds))
    return curves


# ---- tables ----------------------------------------------------------------------------------------


def mean_sd(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.2f}"
    return f"{statistics.mean(values):.2f} ± {statistics.stdev(values):.2f}"


def quality_rows(results: dict, epochs: list[int]) -> list[str]:
    rows = [
        "| model | data | epochs | plain loop | vaelab | vaelab − plain | per seed (plain / vaelab) |",
        "|---|---|---:|---:|---:|---:|---|",
    ]
    for (name, dataset), by_seed in results.items():
        for e in epochs:
            plain = [c["plain"][e - 1][0] for c in by_seed.values()]
            ours = [c["vaelab"][e - 1][0] for c in by_seed.values()]
            seeds = ", ".join(
                f"{s}: {c['plain'][e - 1][0]:.2f}{unused(c['plain'][e - 1])} / "
                f"{c['vaelab'][e - 1][0]:.2f}{unused(c['vaelab'][e - 1])}"
                for s, c in by_seed.items()
            )
            rows.append(
                f"| {name} | {dataset} | {e} | {mean_sd(plain)} | {mean_sd(ours)} | "
                f"{statistics.mean(ours) - statistics.mean(plain):+.2f} | {seeds} |"
            )
    return rows


def unused(point) -> str:
    return " (KL<0.05)" if point[1] < UNUSED_KL else ""


def reached(curve, target: float) -> str:
    """'E epochs, S s' for the first epoch at or below target, or how far it got."""
    seconds = 0.0
    for epoch, (score, _, s) in enumerate(curve, 1):
        seconds += s
        if score <= target:
            return f"{epoch}, {seconds:.1f} s", seconds
    return f"not in {len(curve)} ({seconds:.1f} s)", None


def time_rows(results: dict) -> list[str]:
    rows = [
        "| model | data | seed | target: plain's last −ELBO | plain: epochs, seconds | vaelab: epochs, seconds "
        "| plain s / vaelab s |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for (name, dataset), by_seed in results.items():
        for seed, curves in by_seed.items():
            target = curves["plain"][-1][0]
            (plain, plain_s), (ours, ours_s) = reached(curves["plain"], target), reached(curves["vaelab"], target)
            ratio = f"{plain_s / ours_s:.2f}x" if ours_s else "-"
            rows.append(f"| {name} | {dataset} | {seed} | {target:.2f} | {plain} | {ours} | {ratio} |")
    return rows


def machine(device) -> str:
    cpu = platform.processor() or platform.machine()
    try:
        lines = open("/proc/cpuinfo").read().splitlines()
        cpu = next(line.split(":", 1)[1].strip() for line in lines if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    where = f"{cpu}, {len(os.sched_getaffinity(0))} cores, torch threads {torch.get_num_threads()}"
    if device.type == "cuda":
        where = f"{torch.cuda.get_device_name(device)}; host {where}"
    try:
        commit = (
            subprocess.run(
                ["git", "rev-parse", "--short", "HEAD"],
                capture_output=True,
                text=True,
                cwd=os.path.dirname(os.path.abspath(__file__)),
            ).stdout.strip()
            or "unknown"
        )
    except OSError:  # no git on this machine
        commit = "unknown"
    return (
        f"machine: {where}\nversions: python {platform.python_version()}, torch {torch.__version__}, "
        f"numpy {np.__version__}; vaelab commit {commit}"
    )


def check_same_networks(names: list[str], data_by_name: dict) -> None:
    for name in names:
        for dataset, data in data_by_name.items():
            model_name, options = MODELS[name]
            ours = build_model(model_name, make_config(model_name, data.image_shape, data.num_classes, **options))
            counts = [sum(p.numel() for p in m.parameters()) for m in (ours, plain_network(name, data))]
            if counts[0] != counts[1]:
                raise SystemExit(
                    f"{name} on {dataset}: vaelab's network has {counts[0]:,} parameters and the plain "
                    f"loop's {counts[1]:,}; update PlainMLP / PlainConv in {__file__} to match"
                )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="mlp,conv,conv16,cvae", help=f"comma separated, of {', '.join(MODELS)}")
    parser.add_argument("--datasets", default="fashion-mnist,mnist-sample")
    parser.add_argument(
        "--epochs", default="2,10", help="epoch counts to report, comma separated; runs last the largest"
    )
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (0: leave PyTorch's default)")
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    args = parser.parse_args()
    names, datasets = args.models.split(","), args.datasets.split(",")
    epochs, seeds = sorted(int(e) for e in args.epochs.split(",")), [int(s) for s in args.seeds.split(",")]
    unknown = set(names) - set(MODELS)
    if unknown:
        parser.error(f"unknown model(s) {', '.join(sorted(unknown))}; choose from {', '.join(MODELS)}")
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda, but PyTorch sees no CUDA GPU")
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    data_by_name = {d: load_dataset(d) for d in datasets}
    check_same_networks(names, data_by_name)
    print(machine(device))
    print(
        f"seeds {', '.join(map(str, seeds))}; batch {args.batch_size}; Adam lr 1e-3 in both; "
        f"scorer: test -ELBO with fixed eps (seed {SCORE_SEED}), nats per image, lower is better\n",
        flush=True,
    )
    results = {}
    for name in names:
        for dataset, data in data_by_name.items():
            results[name, dataset] = {
                seed: race(name, data, dataset, seed, epochs[-1], args.batch_size, device) for seed in seeds
            }
            print(f"done: {name} on {dataset}", flush=True)
    print(
        '\nTest −ELBO, nats (mean ± sd over seeds; "KL<0.05": z unused, a collapsed posterior or one not '
        "yet in use early on)\n"
    )
    print("\n".join(quality_rows(results, epochs)))
    print(
        f"\nTime to quality: training seconds until the test −ELBO reaches the plain loop's value after "
        f"{epochs[-1]} epochs (same machine, same run, the contenders alternating epoch by epoch)\n"
    )
    print("\n".join(time_rows(results)))


if __name__ == "__main__":
    main()
