"""The training loop: one function, read top to bottom.

Data live on the training device as uint8 tensors; each epoch draws a permutation from an
explicit generator, slices batches by index and converts them to float there. The step
(forward, loss, backward, Adam) has static shapes and no host synchronisation, so it can be
captured whole in a CUDA graph. Every batch is therefore whole: the last one of an epoch is made
up with the epoch's first images, so an epoch takes as many steps as a DataLoader that keeps its
partial batch.
"""
import signal
import time
from contextlib import nullcontext
from dataclasses import asdict
from functools import partial
from pathlib import Path

import numpy as np
import torch

from vaelab import checks, distributed, runs, speed
from vaelab.config import RESUME_OVERRIDES, TrainConfig, divergence_advice, resumed_config
from vaelab.data import ImageData, load_dataset
from vaelab.device import resolve_device
from vaelab.distributed import Ranks, sum_all
from vaelab.errors import VaelabError
from vaelab.images import image_grid
from vaelab.latent import decode, encode_set
from vaelab.lock import RunLock
from vaelab.losses import mmd, vae_loss
from vaelab.models import build_model, custom, get_preset, make_config
from vaelab.pixels import binarize, binarized_set, binarized_train_set, to_float
from vaelab.progress import bar as progress_bar
from vaelab.stopping import Interrupted, StopSignals, stop_requested

METRIC_KEYS = ("total", "recon", "kl")


def train_step(model, optimizer, x, y, eps, beta, cfg: TrainConfig, autocast=nullcontext) -> torch.Tensor:
    """One Adam step on a batch (eps: its N(0, I) noise; beta: a float or a 0-d tensor); returns
    [total, recon, kl], detached. vaelab.speed decides how it runs: as is, compiled, or replayed
    from a CUDA graph, so it keeps static shapes and never waits for the host."""
    with autocast():
        logits, mu, logvar, z = model(x, y, eps)
        total, recon, kl = vae_loss(logits, x, mu, logvar, z, beta=beta, likelihood=cfg.likelihood,
                                    kl=cfg.kl, std=cfg.gaussian_std, objective=cfg.objective,
                                    mmd_weight=cfg.mmd_weight)
    total, recon, kl = total.float(), recon.float(), kl.float()
    optimizer.zero_grad(set_to_none=True)
    total.backward()
    if cfg.clip_grad:
        norm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.clip_grad)
        total = torch.where(torch.isfinite(norm), total, norm)  # a non-finite gradient shows as the loss
    optimizer.step()
    return torch.stack([total, recon, kl]).detach()


def warmup_steps(cfg: TrainConfig, steps: int) -> int:
    """Steps of the learning-rate warm-up: `lr_warmup`, but at most one epoch of `steps` steps."""
    return min(cfg.lr_warmup, steps)


def learning_rate(cfg: TrainConfig, done: int, steps: int) -> float:
    """lr for the step after `done` steps: rising linearly over the warm-up, then `lr`.

    Adam's first updates move every weight by about lr whatever the gradient's size, and the conv
    encoder's Dense 14 ReLU layer sums 3,136 non-negative inputs, so a few such steps can push all
    its units below zero for good. While the decoder was Glorot-initialised too, that collapsed the
    posterior without warm-up for 2 of 8 seeds on Fashion-MNIST at batch 128 and 1 of 8 on
    mnist-sample at batch 32, and 100 steps prevented it. With the decoder's PyTorch default
    (models/common.py) none of 8 collapsed on either without warm-up, so it is off by default: on
    mnist-sample at batch 128, a warm-up of one epoch (31 steps) cost 18 nats of test ELBO after
    2 epochs for conv and 10 for mlp. At batch 32, 100 steps still help conv (2 epochs on the
    sample, 8 seeds: 189 nats against 196). Capped at one epoch so that a short run on a small
    data set is not spent warming up."""
    warm = warmup_steps(cfg, steps)
    return cfg.lr * min(1.0, (done + 1) / warm) if warm else cfg.lr


def kl_weight(cfg: TrainConfig, epoch: int, step: int, steps: int) -> float:
    """beta, reached linearly over the first `kl_warmup` epochs (counted in steps)."""
    if not cfg.kl_warmup:
        return cfg.beta
    done = (epoch - 1) * steps + step
    return cfg.beta * min(1.0, done / (cfg.kl_warmup * steps))


@torch.no_grad()
def evaluate(model, x_uint8, y, cfg: TrainConfig, ranks: Ranks = Ranks()) -> dict:
    """Mean test loss terms (z sampled, as in training) and the test ELBO, in nats per image.

    With several processes each takes every W-th test image and the sums are added up."""
    model.eval()
    device = x_uint8.device
    noise = torch.Generator(device).manual_seed(cfg.seed + 1)  # the same z noise every epoch, apart from training's
    eps = torch.randn(len(x_uint8), model.config.latent_dim, generator=noise, device=device)
    x_uint8, y, eps = (t[ranks.rank::ranks.world] for t in (x_uint8, y, eps))
    sums, codes = torch.zeros(3, device=device), []
    for start in range(0, len(x_uint8), cfg.eval_batch_size):
        x = to_float(x_uint8[start:start + cfg.eval_batch_size])
        batch = slice(start, start + cfg.eval_batch_size)
        logits, mu, logvar, z = model(x, y[batch], eps[batch])
        _, recon, kl = vae_loss(logits, x, mu, logvar, z, likelihood=cfg.likelihood, kl=cfg.kl,
                                std=cfg.gaussian_std)  # the ELBO's terms, whatever the objective
        sums += torch.stack([recon * len(x), kl * len(x), recon.new_tensor(len(x))])
        codes.append(z)
    model.train()
    recon_sum, kl_sum, count = sum_all(sums, ranks).tolist()
    recon, kl = recon_sum / count, kl_sum / count
    out = {"recon": recon, "kl": kl, "elbo": -(recon + kl)}
    if cfg.objective == "mmd":
        out["mmd"] = heldout_mmd(torch.cat(codes), cfg.batch_size, noise)
        return {"total": recon + cfg.mmd_weight * out["mmd"], **out}
    return {"total": recon + cfg.beta * kl, **out}


def heldout_mmd(z: torch.Tensor, batch_size: int, noise: torch.Generator) -> float:
    """The training objective's MMD term on test codes: the mean over batches of the training
    batch size (the V-statistic depends on it), each against as many seeded N(0, I) draws."""
    z = z[:max(1, len(z) // batch_size) * batch_size]  # whole batches; all of z when it is less than one
    prior = torch.randn(z.shape, generator=noise, device=z.device)
    parts = [mmd(a, b) for a, b in zip(z.split(batch_size), prior.split(batch_size))]
    return torch.stack(parts).mean().item()


def fixed_images(data: ImageData, n: int = 8) -> torch.Tensor:
    """Indices of n test images, classes in turn (0, 1, 2, ...), shown every epoch."""
    y = data.test_y
    rank = torch.zeros_like(y)  # how many earlier test images share the label
    for k in range(data.num_classes):
        where = torch.nonzero(y == k).flatten()
        rank[where] = torch.arange(len(where))
    return torch.argsort(rank * data.num_classes + y, stable=True)[:n]


def reconstructions(model, x_uint8, y) -> np.ndarray:
    """The PNG of recon/epoch_NNN.png: the images (top row) and their reconstructions decoded
    from the posterior mean (bottom row)."""
    was_training = model.training
    model.eval()
    mu, _ = encode_set(model, x_uint8, y)
    recon = decode(model, mu, y)
    model.train(was_training)
    return image_grid(torch.cat([to_float(x_uint8.cpu()), recon]), ncol=len(x_uint8))


def rng_state(generator: torch.Generator, device) -> dict:
    state = {"torch": torch.get_rng_state(), "order": generator.get_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def set_rng_state(state: dict, generator: torch.Generator, device) -> None:
    torch.set_rng_state(state["torch"])
    generator.set_state(state["order"])
    if device.type == "cuda" and "cuda" in state:
        try:
            torch.cuda.set_rng_state(state["cuda"], device)
        except (RuntimeError, TypeError) as e:
            raise VaelabError(f"the checkpoint's CUDA generator state is not one this GPU takes ({e}): "
                              f"the file is damaged; restore it from a copy, or train the run again") from None


def train(cfg: TrainConfig, model_options: dict | None = None, *, out: str | None = None,
          overwrite: bool = False, progress: bool = True, model: torch.nn.Module | None = None,
          command=None, callbacks=()) -> Path:
    """Train a new model and write its run folder; returns the folder. `model` is a module of your
    own that follows the model interface (then cfg.model is "custom"); `command`, what config.json
    records as the command that started the run (default: this process's command line); `callbacks`,
    vaelab.callbacks.Callback objects told of each step, epoch and the end."""
    with StopSignals() as stop:  # from here on, Ctrl-C ends in a checkpoint
        ranks, device = distributed.setup(resolve_device(cfg.device))
        torch.manual_seed(cfg.seed)
        data = load_dataset(cfg.dataset, cfg.data_dir)
        model = new_model(cfg, model_options, data, model).to(device)
        distributed.check_batch(cfg.batch_size, ranks)
        check_batch_fits(cfg.batch_size, len(data.train_x))  # everything is checked before the folder is touched
        run_dir = None
        if ranks.main:
            run_dir = runs.new_run_dir(cfg.model, cfg.dataset, out, overwrite)
        run_dir = Path(distributed.share(str(run_dir), ranks))
        with RunLock(run_dir) if ranks.main else nullcontext():
            if ranks.main:
                runs.clear_run(run_dir)  # with --overwrite: the earlier run's files, its checkpoint first
                runs.write_config(run_dir, runs.describe(cfg, model, data, device, ranks.world, command))
            return fit(cfg, model, data, run_dir, stop, ranks, progress=progress, callbacks=callbacks)


def check_batch_fits(batch_size: int, train_size: int) -> None:
    if batch_size > train_size:
        raise VaelabError(f"--batch-size {batch_size} is larger than the {train_size} training images; use a smaller one")


def new_model(cfg: TrainConfig, model_options: dict | None, data: ImageData, model=None) -> torch.nn.Module:
    """The model to train: the preset cfg.model for this data, or your own module, checked."""
    if cfg.model == custom.NAME:
        if model is None:
            raise VaelabError("model 'custom' is a module of your own: train it from Python, "
                              "vaelab.train(model=YourModel(config), dataset=...)")
        custom.check(model, data)
        return model
    if model is not None:
        raise VaelabError(f"a model module was given with model '{cfg.model}'; give one or the other")
    if get_preset(cfg.model).conditional and not data.labelled:
        raise VaelabError(f"model '{cfg.model}' is conditional and needs labels, but {cfg.dataset} has "
                          f"none; put the images in one sub-folder per class, or use mlp or conv")
    config = make_config(cfg.model, data.image_shape, data.num_classes, **(model_options or {}))
    return build_model(cfg.model, config)


def resume(run_dir: str | Path, progress: bool = True, model: torch.nn.Module | None = None, callbacks=(),
           **overrides) -> Path:
    """Continue a run from its last checkpoint; `overrides` may extend the epochs, or change the
    learning rate or gradient clipping (e.g. after a divergence). `model`: a module of your own to
    continue, when its classes cannot be imported (vaelab/models/custom.py)."""
    run_dir = Path(run_dir)
    unknown = set(overrides) - set(RESUME_OVERRIDES)
    if unknown:
        allowed = ", ".join("--" + k.replace("_", "-") for k in RESUME_OVERRIDES)
        raise VaelabError(f"--resume continues a run with its own settings; only {allowed} may change, "
                          f"not {', '.join(sorted(unknown))}")
    if not run_dir.is_dir():
        raise VaelabError(f"run folder {run_dir} does not exist; give the folder `vaelab train` wrote")
    main = distributed.env_rank() == 0
    with RunLock(run_dir) if main else nullcontext():  # one writer; the others are refused at once
        if main:
            runs.recover(run_dir)  # an epoch's files left half-replaced by a kill are completed first
        if not (run_dir / runs.CHECKPOINT).is_file():
            raise VaelabError(f"{run_dir} has no checkpoint yet (it stopped before its first one); "
                              f"start again with `vaelab train ... --out {run_dir} --overwrite`")
        saved = runs.read_config(run_dir)
        cfg = resumed_config(saved, overrides, run_dir / runs.CONFIG)
        with StopSignals() as stop:
            ranks, device = distributed.setup(resolve_device(cfg.device))
            distributed.check_batch(cfg.batch_size, ranks)
            distributed.share(None, ranks)  # the others wait until rank 0 has completed the folder
            torch.manual_seed(cfg.seed)
            data = load_dataset(cfg.dataset, cfg.data_dir)
            model = (runs.rebuild(saved, run_dir) if model is None else model).to(device)
            changed = {**saved, "train": asdict(cfg)} if asdict(cfg) != saved["train"] else None
            return fit(cfg, model, data, run_dir, stop, ranks, progress=progress, resume=True, config=changed,
                       callbacks=callbacks)


def match_layouts(optimizer) -> None:
    """Give Adam's loaded moments their parameter's memory layout (channels-last or not): the
    fused kernel walks parameter and moments in step, so their strides must agree."""
    for group in optimizer.param_groups:
        for p in group["params"]:
            state = optimizer.state.get(p, {})
            for key, value in state.items():
                if value.shape == p.shape and value.stride() != p.stride():
                    state[key] = torch.empty_like(p).copy_(value)


def fit(cfg: TrainConfig, model, data: ImageData, run_dir: Path, stop: "StopSignals",
        ranks: Ranks = Ranks(), *, progress: bool = True, resume: bool = False, config: dict | None = None,
        callbacks=()) -> Path:
    """The loop: forward, loss, backward, step; evaluate, record, checkpoint, every epoch.

    SIGINT/SIGTERM finish the current step, write a checkpoint and raise Interrupted; a
    non-finite loss stops with a message and leaves the last good checkpoint in place. Each
    epoch's files (checkpoint, weights, metrics, reconstructions, and `config` when settings
    changed on resume) are replaced together.
    """
    device = next(model.parameters()).device
    how = speed.plan(cfg.speed, device, model, ranks.world)
    speed.prepare(how, model)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr, fused=True,  # one kernel per step: -15% MLP epoch on CPU
                                 capturable=speed.capturable(how))
    trained = distributed.wrap(model, ranks)  # DDP with several processes, else the model itself
    order = torch.Generator().manual_seed(cfg.seed)  # data order, apart from weight init and z
    position = {"epoch": 0, "step": 0, "sums": [0.0, 0.0, 0.0], "seconds": 0.0}
    if resume:
        position, rng = runs.load_checkpoint(run_dir / runs.CHECKPOINT, model, cfg.model, optimizer)
        set_rng_state(rng, order, device)
        for group in optimizer.param_groups:
            group["capturable"] = speed.capturable(how)  # this run's speed mode, not the saved one's
        match_layouts(optimizer)
    train_x, train_y = binarized_train_set(data.train_x, cfg.binarize).to(device), data.train_y.to(device)
    test_x, test_y = binarized_set(data.test_x, cfg.binarize, "test", cfg.seed).to(device), data.test_y.to(device)
    shown = fixed_images(data).to(device)
    check_batch_fits(cfg.batch_size, len(train_x))
    steps = -(-len(train_x) // cfg.batch_size)  # ceil: dropping the partial batch cost mnist-sample 3% of its steps
    latent_dim = model.config.latent_dim
    saved_at = None  # where the last good checkpoint stands, for the advice after a divergence
    if resume:
        saved_at = checks.check_position(position, steps, cfg.epochs, run_dir / runs.CHECKPOINT)
        notes = checks.resume_notes(runs.read_metrics(run_dir), position["epoch"], cfg.epochs, run_dir)
        for note in notes if ranks.main else []:
            print(note, flush=True)
    step = speed.Stepper(partial(train_step, cfg=cfg), how, trained, optimizer, cfg.precision)
    callbacks = callbacks if ranks.main else ()  # the process that writes the run folder tells
    for callback in callbacks:
        callback.on_train_begin(run_dir)

    def checkpoint(epochs_done, step, sums, seconds, order_state):
        sums = sum_all(sums, ranks) / ranks.world  # every rank resumes from the mean partial sums
        if ranks.main:
            rng = {**rng_state(order, device), "order": order_state}
            where = {"epoch": epochs_done, "step": step, "sums": sums.tolist(), "seconds": seconds}
            runs.save_checkpoint(run_dir / runs.CHECKPOINT, model, cfg.model, optimizer, where, rng)
        distributed.wait_for_all(ranks)  # the others stop once it is written (see the end of fit)

    for epoch in range(position["epoch"] + 1, cfg.epochs + 1):
        order_state = order.get_state()  # a checkpoint inside this epoch redraws the same permutation
        perm = torch.randperm(len(train_x), generator=order).to(device)
        perm = torch.cat([perm, perm[:steps * cfg.batch_size - len(perm)]])  # whole batches: static shapes
        first = position["step"] if epoch == position["epoch"] + 1 else 0
        sums = torch.tensor(position["sums"] if first else [0.0] * 3, device=device)
        started = time.perf_counter() - (position["seconds"] if first else 0.0)
        bar = progress_bar(steps * cfg.batch_size, first * cfg.batch_size, f"epoch {epoch}/{cfg.epochs}",
                           show=progress and ranks.main)
        for i in range(first, steps):
            idx = perm[i * cfg.batch_size:(i + 1) * cfg.batch_size][ranks.rank::ranks.world]  # this rank's shard
            eps = torch.randn(cfg.batch_size, latent_dim, device=device)[ranks.rank::ranks.world]
            beta = kl_weight(cfg, epoch, i, steps)
            done = (epoch - 1) * steps + i  # steps taken before this one
            for group in optimizer.param_groups:
                group["lr"] = learning_rate(cfg, done, steps)
            x = binarize(to_float(train_x[idx]), cfg.binarize)  # a fresh draw per batch when dynamic
            loss = step(x, train_y[idx], eps, beta, steady=done >= warmup_steps(cfg, steps) - 1)
            if (device.type == "cpu" or i % 25 == 24) and not torch.isfinite(loss[0]):
                raise VaelabError(f"the loss became non-finite in epoch {epoch} at step {i + 1} of {steps}. "
                                  + divergence_advice(cfg, run_dir, saved_at))
            sums += loss
            tell_step(callbacks, done + 1, loss, optimizer, beta, epoch)
            bar.update(cfg.batch_size)
            if i % 25 == 24:
                bar.set_postfix(loss=f"{sums[0].item() / (i + 1):.1f}")  # host sync every 25 steps only
            if stop_requested(stop, i, steps, device, ranks):
                checkpoint(epoch - 1, i + 1, sums, time.perf_counter() - started, order_state)
                bar.close()
                signum = stop.signum or signal.SIGTERM  # a rank told to stop by another rank
                raise Interrupted(
                    f"stopped by {signal.Signals(signum).name} in epoch {epoch} after step {i + 1} "
                    f"of {steps}; checkpoint written. Continue with: vaelab train --resume {run_dir}",
                    signum)
        bar.close()
        train_means = (sum_all(sums, ranks) / (steps * ranks.world)).tolist()
        train_seconds = time.perf_counter() - started
        test = evaluate(model, test_x, test_y, cfg, ranks)
        seconds = time.perf_counter() - started
        row = {"epoch": epoch,
               **{f"train_{k}": v for k, v in zip(METRIC_KEYS, train_means)},
               **{f"test_{k}": test[k] for k in METRIC_KEYS},
               "test_elbo": test["elbo"], "seconds": seconds,
               "images_per_second": steps * cfg.batch_size / train_seconds}
        if cfg.objective == "mmd":  # total = recon + mmd_weight * MMD: the MMD term on its own
            row |= {"train_mmd": (train_means[0] - train_means[1]) / cfg.mmd_weight, "test_mmd": test["mmd"]}
        if not all(np.isfinite(v) for v in row.values()):
            raise VaelabError(f"the loss became non-finite in epoch {epoch} ({row}). "
                              + divergence_advice(cfg, run_dir, saved_at))
        position = {"epoch": epoch, "step": 0, "sums": [0.0] * 3, "seconds": 0.0}
        saved_at = f"end of epoch {epoch}"
        if not ranks.main:
            continue
        runs.commit_epoch(run_dir, model, cfg.model, optimizer, position, rng_state(order, device), row,
                          reconstructions(model, test_x[shown], test_y[shown]), config)
        print(f"epoch {epoch}/{cfg.epochs}  train {row['train_total']:.2f} (recon {row['train_recon']:.2f}, "
              f"KL {row['train_kl']:.2f})  test {row['test_total']:.2f}  test ELBO {row['test_elbo']:.2f}  "
              f"{seconds:.1f} s  {row['images_per_second']:,.0f} img/s", flush=True)
        for callback in callbacks:
            callback.on_epoch_end(row, run_dir)
        if epoch == cfg.epochs and (notice := collapse_notice(row, cfg, run_dir)):
            print(notice, flush=True)
    for callback in callbacks:
        callback.on_train_end(run_dir)
    distributed.wait_for_all(ranks)  # leave together: a gloo process that tore its group down while
    return run_dir                   # rank 0 still wrote the last epoch aborted ("terminate called")


def tell_step(callbacks, step: int, loss: torch.Tensor, optimizer, beta, epoch: int) -> None:
    """on_step of the callbacks whose step_every divides `step` (one wait for the device then)."""
    due = [c for c in callbacks if step % c.step_every == 0]
    if due:
        total, recon, kl = loss.tolist()
        values = {"loss": total, "recon": recon, "kl": kl, "lr": optimizer.param_groups[0]["lr"],
                  "beta": float(beta), "epoch": epoch}
        for callback in due:
            callback.on_step(step, values)


COLLAPSED_KL = 0.05  # nats per image: below this the code tells the decoder next to nothing


def collapse_notice(row: dict, cfg: TrainConfig, run_dir: Path) -> str | None:
    """What to do when training ends with the posterior collapsed (test KL near 0)."""
    if cfg.objective != "elbo" or row["test_kl"] >= COLLAPSED_KL:
        return None
    return (f"note: the test KL is {row['test_kl']:.3f} nats: the posterior has collapsed, so z carries almost "
            f"nothing about the image and every sample looks alike. With the conv models this happens when the "
            f"encoder's small ReLU layer dies in the first steps. It can recover with more epochs (vaelab train "
            f"--resume {run_dir} --epochs {cfg.epochs + 10}); a fresh run with --kl-warmup 1, --batch-size 32"
            + (f" or --beta 1 (now {cfg.beta:g})" if cfg.beta > 1 else " or another --seed") + " usually avoids it.")
