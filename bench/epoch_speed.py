"""Seconds per epoch: vaelab's loop against a plain PyTorch loop, same data, same process.

The plain loop is written the way the course notebooks write it: a DataLoader over a
TensorDataset of float images, sigmoid then binary cross-entropy. vaelab keeps the data as uint8
on the device, slices batches by index and computes the BCE from logits.

    python bench/epoch_speed.py [--dataset fashion-mnist] [--epochs 3] [--models mlp,conv]

Prints the device, versions and, per model, the median seconds per epoch over the epochs after
the first (the first is warm-up), with the number of epochs measured.
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
from vaelab.losses import kl_standard_normal
from vaelab.models import build_model, make_config
from vaelab.runs import read_metrics
from vaelab.train import train


def vaelab_epochs(model: str, dataset: str, epochs: int, batch_size: int) -> list[float]:
    """Training seconds of each epoch of a real `vaelab train` run (evaluation excluded)."""
    with tempfile.TemporaryDirectory() as out:
        cfg = TrainConfig(model=model, dataset=dataset, epochs=epochs, batch_size=batch_size, device="cpu")
        train(cfg, out=out, overwrite=True, progress=False)
        rows = read_metrics(out)
    images = len(load_dataset(dataset).train_x) // batch_size * batch_size  # last partial batch dropped
    return [images / row["images_per_second"] for row in rows]


def plain_epochs(model_name: str, dataset: str, epochs: int, batch_size: int) -> list[float]:
    """The notebook loop: DataLoader(TensorDataset), sigmoid + BCE(sum) / batch, KL, Adam."""
    data = load_dataset(dataset)
    x = data.train_x.float() / 255
    loader = DataLoader(TensorDataset(x, data.train_y), batch_size=batch_size, shuffle=True)
    torch.manual_seed(0)
    model = build_model(model_name, make_config(model_name, data.image_shape, data.num_classes))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    times = []
    for _ in range(epochs):
        start = time.perf_counter()
        for xb, yb in loader:
            logits, mu, logvar, _ = model(xb, yb)
            recon = F.binary_cross_entropy(torch.sigmoid(logits), xb, reduction="sum") / len(xb)
            loss = recon + kl_standard_normal(mu, logvar).mean()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        times.append(time.perf_counter() - start)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="fashion-mnist")
    parser.add_argument("--epochs", type=int, default=3, help="epochs per loop; the first is warm-up")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--models", default="mlp,conv")
    args = parser.parse_args()
    print(f"device: cpu ({platform.processor() or platform.machine()}), {torch.get_num_threads()} threads; "
          f"torch {torch.__version__}; python {platform.python_version()}; data {args.dataset}; "
          f"batch {args.batch_size}; median of {args.epochs - 1} epochs after 1 warm-up epoch")
    print(f"{'model':<6} {'plain loop s/epoch':>19} {'vaelab s/epoch':>15} {'speed-up':>9}")
    for name in args.models.split(","):
        plain = statistics.median(plain_epochs(name, args.dataset, args.epochs, args.batch_size)[1:])
        ours = statistics.median(vaelab_epochs(name, args.dataset, args.epochs, args.batch_size)[1:])
        print(f"{name:<6} {plain:>19.2f} {ours:>15.2f} {plain / ours:>8.2f}x", flush=True)


if __name__ == "__main__":
    main()
