"""Seconds per epoch of vaelab's speed modes against a plain PyTorch loop, same data, same process.

The plain loop is written the way the course notebooks write it: a DataLoader over a
TensorDataset of float images (moved to the device batch by batch), sigmoid then binary
cross-entropy, Adam. vaelab's rows are real `vaelab train` runs with --speed MODE
(MODE:bf16 adds --precision bf16, MODE:fp16 --precision fp16 with its gradient scaler).

    python bench/speed.py [--dataset fashion-mnist] [--models mlp,conv] [--batches 128,1024]
                          [--modes plain,eager,auto] [--epochs 4] [--device auto]

Prints the device, versions and one markdown row per model x batch x mode: the median seconds
per training epoch over the epochs after the first (the first holds warm-up, compilation or
graph capture), images per second, the ratio to the plain loop at the same batch size, the
test evaluation's seconds per epoch, and the test ELBO after the last epoch. On the CPU the
allocator setting vaelab uses (speed.keep_freed_memory) is on for every row, plain included.
"""

import argparse
import platform
import statistics
import tempfile
import time

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

from vaelab.config import TrainConfig
from vaelab.data import load_dataset
from vaelab.data.pixels import to_float
from vaelab.device import resolve_device
from vaelab.losses import kl_standard_normal
from vaelab.models import build_model, make_config
from vaelab.runs import read_metrics
from vaelab.training import speed, train
from vaelab.training.loop import evaluate


def vaelab_epochs(model: str, data, dataset: str, epochs: int, batch: int, mode: str, device) -> dict:
    """A real `vaelab train` run: per-epoch training seconds, evaluation seconds, final test ELBO."""
    speed, _, precision = mode.partition(":")
    with tempfile.TemporaryDirectory() as out:
        cfg = TrainConfig(
            model=model,
            dataset=dataset,
            epochs=epochs,
            batch_size=batch,
            device=device.type,
            speed=speed,
            precision=precision or "fp32",
        )
        train(cfg, out=out, overwrite=True, progress=False)
        rows = read_metrics(out)
    images = -(-len(data.train_x) // batch) * batch  # whole batches, the last one made up
    train_seconds = [images / r["images_per_second"] for r in rows]
    return {
        "epochs": train_seconds,
        "eval": statistics.median(r["seconds"] - t for r, t in zip(rows, train_seconds, strict=True)),
        "elbo": rows[-1]["test_elbo"],
        "images": images,
    }


def plain_epochs(model_name: str, data, epochs: int, batch: int, device) -> dict:
    """The notebook loop: DataLoader(TensorDataset), .to(device), sigmoid + BCE(sum) / batch, KL, Adam."""
    loader = DataLoader(TensorDataset(to_float(data.train_x.clone()), data.train_y), batch_size=batch, shuffle=True)
    torch.manual_seed(0)
    model = build_model(model_name, make_config(model_name, data.image_shape, data.num_classes)).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    times = []
    for _ in range(epochs):
        start = time.perf_counter()
        for xb, yb in loader:
            xb, yb = xb.to(device), yb.to(device)
            logits, mu, logvar, _ = model(xb, yb)
            recon = F.binary_cross_entropy(torch.sigmoid(logits), xb, reduction="sum") / len(xb)
            loss = recon + kl_standard_normal(mu, logvar).mean()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    started = time.perf_counter()
    test = evaluate(model, data.test_x.to(device), data.test_y.to(device), TrainConfig())
    return {"epochs": times, "eval": time.perf_counter() - started, "elbo": test["elbo"], "images": len(data.train_x)}


def device_name(device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="fashion-mnist")
    parser.add_argument("--models", default="mlp,conv")
    parser.add_argument("--batches", default="128")
    parser.add_argument(
        "--modes", default="plain,eager,auto", help="plain, and vaelab's --speed modes; MODE:bf16, MODE:fp16 autocast"
    )
    parser.add_argument("--epochs", type=int, default=4, help="epochs per row; the first is warm-up")
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    device = resolve_device(args.device)
    if device.type == "cpu":  # for every row, plain included: the ratios show the step, not the allocator
        speed.keep_freed_memory()
    data = load_dataset(args.dataset)
    print(
        f"device: {device_name(device)}; torch {torch.__version__}; python {platform.python_version()}; "
        f"data {args.dataset} ({len(data.train_x):,} training images); "
        f"median of {args.epochs - 1} epochs after 1 warm-up\n"
    )
    print("| model | batch | mode | s / epoch | images / s | vs plain | eval s | test ELBO |")
    print("|---|---:|---|---:|---:|---:|---:|---:|")
    for name in args.models.split(","):
        for batch in (int(b) for b in args.batches.split(",")):
            plain = None
            for mode in args.modes.split(","):
                r = (
                    plain_epochs(name, data, args.epochs, batch, device)
                    if mode == "plain"
                    else vaelab_epochs(name, data, args.dataset, args.epochs, batch, mode, device)
                )
                seconds = statistics.median(r["epochs"][1:])
                plain = seconds if mode == "plain" else plain
                ratio = f"{plain / seconds:.2f}x" if plain else "-"
                print(
                    f"| {name} | {batch} | {mode} | {seconds:.3f} | {r['images'] / seconds:,.0f} | {ratio} | "
                    f"{r['eval']:.3f} | {r['elbo']:.2f} |",
                    flush=True,
                )


if __name__ == "__main__":
    main()
