"""The training loop: one function, read top to bottom.

Data live on the training device as uint8 tensors; each epoch draws a permutation from an
explicit generator, slices batches by index and converts them to float there. The step
(forward, loss, backward, Adam) has static shapes and no host synchronisation, so it can be
captured whole in a CUDA graph; the last partial batch of an epoch is dropped for that reason
(the permutation changes every epoch, so every image is still used).
"""
import json
import platform
import sys
import time
from dataclasses import asdict
from datetime import datetime
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

import vaelab
from vaelab import runs
from vaelab.config import TrainConfig
from vaelab.data import ImageData, load_dataset
from vaelab.errors import VaelabError
from vaelab.images import image_grid, save_png
from vaelab.losses import vae_loss
from vaelab.models import build_model, count_params, make_config

METRIC_KEYS = ("total", "recon", "kl")


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise VaelabError("--device cuda was asked for but PyTorch sees no CUDA GPU; use --device cpu or auto")
    return torch.device(name)


def to_float(x: torch.Tensor) -> torch.Tensor:
    """uint8 pixels -> float32 in [0, 1], on whatever device x lives."""
    return x.float().div_(255)


def train_step(model, optimizer, x, y, cfg: TrainConfig) -> torch.Tensor:
    """One Adam step on a batch; returns [total, recon, kl] as a detached device tensor."""
    logits, mu, logvar, z = model(x, y)
    total, recon, kl = vae_loss(logits, x, mu, logvar, z, beta=cfg.beta, likelihood=cfg.likelihood,
                                kl=cfg.kl, std=cfg.gaussian_std)
    optimizer.zero_grad(set_to_none=True)
    total.backward()
    optimizer.step()
    return torch.stack([total, recon, kl]).detach()


@torch.no_grad()
def evaluate(model, x_uint8, y, cfg: TrainConfig) -> dict:
    """Mean test loss terms (z sampled, as in training) and the test ELBO, in nats per image."""
    model.eval()
    sums = torch.zeros(2, device=x_uint8.device)
    for start in range(0, len(x_uint8), cfg.eval_batch_size):
        x = to_float(x_uint8[start:start + cfg.eval_batch_size])
        logits, mu, logvar, z = model(x, y[start:start + cfg.eval_batch_size])
        _, recon, kl = vae_loss(logits, x, mu, logvar, z, likelihood=cfg.likelihood, kl=cfg.kl,
                                std=cfg.gaussian_std)
        sums += torch.stack([recon, kl]) * len(x)
    model.train()
    recon, kl = (sums / len(x_uint8)).tolist()
    return {"total": recon + cfg.beta * kl, "recon": recon, "kl": kl, "elbo": -(recon + kl)}


def fixed_images(data: ImageData, n: int = 8) -> torch.Tensor:
    """Indices of n test images, one per class in turn, shown every epoch."""
    picks = [int(torch.nonzero(data.test_y == k % data.num_classes)[k // data.num_classes]) for k in range(n)]
    return torch.tensor(picks)


@torch.no_grad()
def save_reconstructions(path: Path, model, x_uint8, y) -> None:
    model.eval()
    x = to_float(x_uint8)
    mu, _ = model.encode(x, y)
    recon = torch.sigmoid(model.decode(mu, y))  # decoded from the posterior mean
    model.train()
    save_png(path, image_grid(torch.cat([x, recon]), ncol=len(x)))


def new_run_dir(cfg: TrainConfig, out: str | None, overwrite: bool) -> Path:
    if out is None:
        out = f"runs/{cfg.model}-{cfg.dataset}-{datetime.now():%Y%m%d-%H%M%S}"
    run_dir = Path(out)
    if run_dir.exists() and any(run_dir.iterdir()) and not overwrite:
        raise VaelabError(
            f"run folder {run_dir} already exists and is not empty; continue it with "
            f"`vaelab train --resume {run_dir}`, replace it with --overwrite, or pick another --out"
        )
    (run_dir / "recon").mkdir(parents=True, exist_ok=True)
    return run_dir


def describe_device(device: torch.device) -> str:
    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    return f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


def run_config(cfg: TrainConfig, model, data: ImageData, device) -> dict:
    return {
        "vaelab_version": vaelab.__version__,
        "model": cfg.model,
        "model_config": runs.config_dict(model),
        "params": {"encoder": count_params(model.encoder), "decoder": count_params(model.decoder)},
        "train": asdict(cfg),
        "data": {"name": data.name, "source": data.source, "image_shape": list(data.image_shape),
                 "classes": list(data.classes), "train_size": len(data.train_x), "test_size": len(data.test_x)},
        "command": sys.argv,
        "versions": {"python": platform.python_version(), "torch": torch.__version__, "numpy": np.__version__},
        "device": describe_device(device),
        "created": datetime.now().isoformat(timespec="seconds"),
    }


def rng_state(generator: torch.Generator, device) -> dict:
    state = {"torch": torch.get_rng_state(), "order": generator.get_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def set_rng_state(state: dict, generator: torch.Generator, device) -> None:
    torch.set_rng_state(state["torch"])
    generator.set_state(state["order"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


def train(cfg: TrainConfig, model_options: dict | None = None, *, out: str | None = None,
          overwrite: bool = False, progress: bool = True) -> Path:
    """Train a new model and write its run folder; returns the folder."""
    device = resolve_device(cfg.device)
    torch.manual_seed(cfg.seed)
    data = load_dataset(cfg.dataset, cfg.data_dir)
    config = make_config(cfg.model, data.image_shape, data.num_classes, **(model_options or {}))
    model = build_model(cfg.model, config).to(device)
    run_dir = new_run_dir(cfg, out, overwrite)
    runs.write_json(run_dir / "config.json", run_config(cfg, model, data, device))
    return fit(cfg, model, data, run_dir, progress=progress)


def resume(run_dir: str | Path, epochs: int | None = None, progress: bool = True) -> Path:
    """Continue a run from its last checkpoint, optionally up to a new number of epochs."""
    run_dir = Path(run_dir)
    saved = runs.read_json(run_dir / "config.json")
    cfg = TrainConfig(**{**saved["train"], **({"epochs": epochs} if epochs else {})})
    if cfg.epochs != saved["train"]["epochs"]:
        runs.write_json(run_dir / "config.json", {**saved, "train": asdict(cfg)})
    device = resolve_device(cfg.device)
    torch.manual_seed(cfg.seed)
    data = load_dataset(cfg.dataset, cfg.data_dir)
    model = build_model(cfg.model, saved["model_config"]).to(device)
    return fit(cfg, model, data, run_dir, progress=progress, resume=True)


def fit(cfg: TrainConfig, model, data: ImageData, run_dir: Path, *, progress: bool = True,
        resume: bool = False) -> Path:
    """The loop: forward, loss, backward, step; evaluate, record, checkpoint, every epoch."""
    device = next(model.parameters()).device
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    order = torch.Generator().manual_seed(cfg.seed)  # data order, apart from weight init and z
    start = 1
    if resume:
        done, rng = runs.load_checkpoint(run_dir / "checkpoint.safetensors", model, cfg.model, optimizer)
        set_rng_state(rng, order, device)
        start = done + 1
    train_x, train_y = data.train_x.to(device), data.train_y.to(device)
    test_x, test_y = data.test_x.to(device), data.test_y.to(device)
    shown = fixed_images(data).to(device)
    steps = len(train_x) // cfg.batch_size
    if steps == 0:
        raise VaelabError(f"--batch-size {cfg.batch_size} is larger than the {len(train_x)} training images; use a smaller one")

    for epoch in range(start, cfg.epochs + 1):
        started = time.perf_counter()
        perm = torch.randperm(len(train_x), generator=order).to(device)
        sums = torch.zeros(3, device=device)
        bar = tqdm(total=steps * cfg.batch_size, unit="img", unit_scale=True, leave=False,
                   desc=f"epoch {epoch}/{cfg.epochs}", disable=not progress)
        for i in range(steps):
            idx = perm[i * cfg.batch_size:(i + 1) * cfg.batch_size]
            sums += train_step(model, optimizer, to_float(train_x[idx]), train_y[idx], cfg)
            bar.update(cfg.batch_size)
            if i % 25 == 24:
                bar.set_postfix(loss=f"{sums[0].item() / (i + 1):.1f}")  # sync only every 25 steps
        bar.close()
        train_means = (sums / steps).tolist()
        train_seconds = time.perf_counter() - started
        test = evaluate(model, test_x, test_y, cfg)
        seconds = time.perf_counter() - started
        row = {"epoch": epoch,
               **{f"train_{k}": v for k, v in zip(METRIC_KEYS, train_means)},
               **{f"test_{k}": test[k] for k in METRIC_KEYS},
               "test_elbo": test["elbo"], "seconds": seconds,
               "images_per_second": steps * cfg.batch_size / train_seconds}
        if not all(np.isfinite(v) for v in row.values()):
            raise VaelabError(f"the loss became non-finite in epoch {epoch} ({row}); try a lower --lr or a smaller --beta")
        save_reconstructions(run_dir / "recon" / f"epoch_{epoch:03d}.png", model, test_x[shown], test_y[shown])
        runs.save_weights(run_dir / "model.safetensors", model, cfg.model)
        runs.save_checkpoint(run_dir / "checkpoint.safetensors", model, cfg.model, optimizer, epoch, rng_state(order, device))
        runs.append_metrics(run_dir, row)
        print(f"epoch {epoch}/{cfg.epochs}  train {row['train_total']:.2f} (recon {row['train_recon']:.2f}, "
              f"KL {row['train_kl']:.2f})  test {row['test_total']:.2f}  test ELBO {row['test_elbo']:.2f}  "
              f"{seconds:.1f} s  {row['images_per_second']:,.0f} img/s", flush=True)
    return run_dir
