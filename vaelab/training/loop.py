"""The training loop: `fit`, read top to bottom, with the steps of an epoch in `steps_of_epoch`.

Data live on the training device as uint8 tensors; each epoch draws a permutation from an
explicit generator, slices batches by index and converts them to float there. The step
(forward, loss, backward, Adam) has static shapes and no host synchronisation, so it can be
captured whole in a CUDA graph. Every batch is therefore whole: the last one of an epoch is made
up with the epoch's first images, so an epoch takes as many steps as a DataLoader that keeps its
partial batch. What the step minimises is the run's `Objective` (vaelab/losses.py).
"""

import logging
import signal
import time
from contextlib import nullcontext
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
import torch

from vaelab import runs
from vaelab.config import TrainConfig
from vaelab.data import ImageData
from vaelab.data.pixels import binarize, binarized_set, binarized_train_set, to_float
from vaelab.errors import VaelabError
from vaelab.images import image_grid
from vaelab.latent import decode, encode_set
from vaelab.losses import Objective
from vaelab.options import as_given
from vaelab.progress import bar as progress_bar
from vaelab.training import distributed, speed
from vaelab.training.advice import collapse_notice, divergence_advice, first_step_advice
from vaelab.training.distributed import Ranks, sum_all
from vaelab.training.schedule import kl_weight, learning_rate, warmup_steps
from vaelab.training.state import restore, rng_state
from vaelab.training.stopping import Diverged, Interrupted, StopSignals, stop_requested

log = logging.getLogger(__name__)


def train_step(
    model,
    optimizer,
    inputs: tuple,
    beta,
    objective: Objective,
    clip_grad: float | None,
    autocast=nullcontext,
    scaler=None,
) -> torch.Tensor:
    """One Adam step on a batch, inputs = (x, y, eps, prior_z): images, labels, the posterior's
    N(0, I) noise and the prior draws the objective asks for (or None); beta, a float or a 0-d
    tensor. Returns the objective's terms, detached. vaelab/training/speed.py decides how it runs
    (as is, compiled, or replayed from a CUDA graph), so it keeps static shapes and never waits for
    the host."""
    x, y, eps, prior_z = inputs
    with autocast():
        logits, mu, logvar, z = model(x, y, eps)
        terms = objective(logits, x, mu, logvar, z, prior_z, beta)
    terms = terms.float()
    optimizer.zero_grad(set_to_none=True)
    (terms[0] if scaler is None else scaler.scale(terms[0])).backward()
    if clip_grad:
        if scaler is not None:
            scaler.unscale_(optimizer)  # clip the true gradients, not the scaled ones
        norm = torch.nn.utils.clip_grad_norm_(model.parameters(), clip_grad)
        if scaler is None:  # with a scaler an overflow skips the step instead
            total = torch.where(torch.isfinite(norm), terms[:1], norm.reshape(1))  # a non-finite gradient shows
            terms = torch.cat([total, terms[1:]])
    if scaler is None:
        optimizer.step()
    else:
        scaler.step(optimizer)
        scaler.update()
    return terms.detach()


@torch.no_grad()
def evaluate(model, x_uint8, y, cfg: TrainConfig, ranks: Ranks = Ranks()) -> dict:
    """The objective's terms on the test set (z sampled, as in training) and the test ELBO, in nats
    per image. With several processes each takes every W-th test image and the sums are added up."""
    objective = Objective.from_settings(cfg)
    model.eval()
    device = x_uint8.device
    noise = torch.Generator(device).manual_seed(cfg.seed + 1)  # the same z noise every epoch, apart from training's
    eps = torch.randn(len(x_uint8), model.config.latent_dim, generator=noise, device=device)
    x_uint8, y, eps = (t[ranks.rank :: ranks.world] for t in (x_uint8, y, eps))
    sums, codes = torch.zeros(3, device=device), []
    for start in range(0, len(x_uint8), cfg.eval_batch_size):
        x = to_float(x_uint8[start : start + cfg.eval_batch_size])
        batch = slice(start, start + cfg.eval_batch_size)
        logits, mu, logvar, z = model(x, y[batch], eps[batch])
        recon, kl = objective.elbo_terms(logits, x, mu, logvar, z)  # whatever the objective
        sums += torch.stack([recon * len(x), kl * len(x), recon.new_tensor(len(x))])
        codes.append(objective.codes(mu, z))
    model.train()
    recon_sum, kl_sum, count = sum_all(sums, ranks).tolist()
    recon, kl = recon_sum / count, kl_sum / count
    return {**objective.held_out(recon, kl, torch.cat(codes), cfg.batch_size, noise), "elbo": -(recon + kl)}


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


def check_batch_fits(batch_size: int, train_size: int) -> None:
    if batch_size > train_size:
        raise VaelabError(
            f"{as_given('batch_size', batch_size)} is larger than the {train_size} training images; use a smaller one"
        )


def start_position(objective: Objective) -> dict:
    """Where a new run stands: no epoch done, no step of the next, its partial sums at zero."""
    return {"epoch": 0, "step": 0, "sums": [0.0] * len(objective.terms), "seconds": 0.0}


def metrics_row(
    epoch: int, objective: Objective, train_means: list, test: dict, seconds: float, images_per_second: float
) -> dict:
    """An epoch's row of metrics.jsonl: the objective's terms, train and test, the test ELBO and the
    time; terms beyond total, reconstruction and KL (the MMD) come last, so the first columns never move."""
    first, rest = objective.terms[:3], objective.terms[3:]
    train = dict(zip(objective.terms, train_means, strict=True))
    return {
        "epoch": epoch,
        **{f"train_{k}": train[k] for k in first},
        **{f"test_{k}": test[k] for k in first},
        "test_elbo": test["elbo"],
        "seconds": seconds,
        "images_per_second": images_per_second,
        **{f"{split}_{k}": (train if split == "train" else test)[k] for k in rest for split in ("train", "test")},
    }


@dataclass
class Loop:
    """What every epoch of `fit` works with, built once by `prepare`."""

    cfg: TrainConfig
    model: torch.nn.Module
    objective: Objective
    optimizer: torch.optim.Optimizer
    stepper: speed.Stepper
    order: torch.Generator  # data order, apart from weight init and z
    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    shown: torch.Tensor  # the test images whose reconstructions each epoch shows
    steps: int
    run_dir: Path
    ranks: Ranks
    callbacks: tuple

    @property
    def device(self) -> torch.device:
        return self.train_x.device


def fit(
    cfg: TrainConfig,
    model,
    data: ImageData,
    run_dir: Path,
    stop: StopSignals,
    ranks: Ranks = Ranks(),
    *,
    progress: bool = True,
    resume: bool = False,
    config: dict | None = None,
    callbacks=(),
) -> Path:
    """The loop: forward, loss, backward, step; evaluate, record, checkpoint, every epoch.

    SIGINT/SIGTERM finish the current step, write a checkpoint and raise Interrupted; a
    non-finite loss stops with a message and leaves the last good checkpoint in place. Each
    epoch's files (checkpoint, weights, metrics, reconstructions, and `config` when settings
    changed on resume) are replaced together.
    """
    loop, position, saved_at = prepare(cfg, model, data, run_dir, ranks, resume, callbacks)
    for callback in loop.callbacks:
        callback.on_train_begin(run_dir)
    for epoch in range(position["epoch"] + 1, cfg.epochs + 1):
        sums, started = steps_of_epoch(loop, epoch, position, stop, progress, saved_at)
        train_means = (sum_all(sums, ranks) / (loop.steps * ranks.world)).tolist()
        train_seconds = time.perf_counter() - started
        test = evaluate(model, loop.test_x, loop.test_y, cfg, ranks)
        seconds = time.perf_counter() - started
        row = metrics_row(
            epoch, loop.objective, train_means, test, seconds, loop.steps * cfg.batch_size / train_seconds
        )
        if not all(np.isfinite(v) for v in row.values()):
            raise Diverged(
                f"the loss became non-finite in epoch {epoch} ({row}). " + divergence_advice(cfg, run_dir, saved_at)
            )
        position = {**start_position(loop.objective), "epoch": epoch, **speed.scaler_state(loop.stepper)}
        saved_at = f"end of epoch {epoch}"
        if ranks.main:
            recon = reconstructions(model, loop.test_x[loop.shown], loop.test_y[loop.shown])
            rng = rng_state(loop.order, loop.device)
            end_of_epoch(run_dir, cfg, model, loop.optimizer, position, rng, row, recon, config, loop.callbacks)
        if epoch < cfg.epochs and stop_requested(stop, loop.steps - 1, loop.steps, loop.device, ranks):  # it came
            distributed.wait_for_all(ranks)  # on the last step
            raise interrupted(stop, f"at the end of epoch {epoch}", run_dir)
    for callback in loop.callbacks:
        callback.on_train_end(run_dir)
    distributed.wait_for_all(ranks)  # leave together, once rank 0 has written the last epoch
    if stop_requested(stop, loop.steps - 1, loop.steps, loop.device, ranks):  # on the last epoch's last step:
        signum = stop.signum or signal.SIGTERM  # the run is complete, and the stop is not lost (no report is drawn)
        raise Interrupted(
            f"stopped by {signal.Signals(signum).name} at the end of epoch {cfg.epochs}, the last: the run is "
            f"complete; `vaelab report {run_dir}` draws its report",
            signum,
        )
    return run_dir


def prepare(
    cfg: TrainConfig, model, data: ImageData, run_dir: Path, ranks: Ranks, resume: bool, callbacks
) -> tuple[Loop, dict, str | None]:
    """(the loop's parts, where training stands, where its last good checkpoint stands): data on the
    device, Adam, the step as the speed mode runs it, and on resume everything the checkpoint holds."""
    objective = Objective.from_settings(cfg)
    device = next(model.parameters()).device
    how = speed.plan(cfg.speed, device, model, ranks.world, cfg.precision)
    speed.prepare(how, model)
    optimizer = torch.optim.Adam(
        model.parameters(),
        lr=cfg.lr,
        fused=True,  # one kernel per step: -15% MLP epoch on CPU
        capturable=speed.capturable(how),
    )
    trained = distributed.wrap(model, ranks)  # DDP with several processes, else the model itself
    order = torch.Generator().manual_seed(cfg.seed)
    train_x, train_y = binarized_train_set(data.train_x, cfg.binarize).to(device), data.train_y.to(device)
    test_x, test_y = binarized_set(data.test_x, cfg.binarize, "test", cfg.seed).to(device), data.test_y.to(device)
    check_batch_fits(cfg.batch_size, len(train_x))
    steps = -(-len(train_x) // cfg.batch_size)  # ceil: dropping the partial batch cost mnist-sample 3% of its steps
    position, saved_at = start_position(objective), None
    if resume:
        position, saved_at = restore(run_dir, cfg, objective, model, optimizer, order, how, steps, ranks)
    stepper = speed.Stepper(
        partial(train_step, objective=objective, clip_grad=cfg.clip_grad), how, trained, optimizer, cfg.precision
    )
    speed.load_scaler(stepper, position)
    callbacks = tuple(callbacks) if ranks.main else ()  # the process that writes the run folder tells
    shown = fixed_images(data).to(device)
    parts = (cfg, model, objective, optimizer, stepper, order, train_x, train_y, test_x, test_y, shown, steps)
    return Loop(*parts, run_dir, ranks, callbacks), position, saved_at


def steps_of_epoch(
    loop: Loop, epoch: int, position: dict, stop: StopSignals, progress: bool, saved_at: str | None
) -> tuple[torch.Tensor, float]:
    """The training steps of `epoch`, from where `position` stands in it: (the sums of the
    objective's terms over them, the time the epoch began). A stop writes a checkpoint inside the
    epoch and raises Interrupted; a non-finite loss raises Diverged."""
    cfg, model, ranks, device, steps = loop.cfg, loop.model, loop.ranks, loop.device, loop.steps
    order_state = loop.order.get_state()  # a checkpoint inside this epoch redraws the same permutation
    perm = torch.randperm(len(loop.train_x), generator=loop.order).to(device)
    perm = torch.cat([perm, perm[: steps * cfg.batch_size - len(perm)]])  # whole batches: static shapes
    first = position["step"] if epoch == position["epoch"] + 1 else 0
    sums = torch.tensor(position["sums"] if first else start_position(loop.objective)["sums"], device=device)
    started = time.perf_counter() - (position["seconds"] if first else 0.0)
    bar = progress_bar(
        steps * cfg.batch_size, first * cfg.batch_size, f"epoch {epoch}/{cfg.epochs}", show=progress and ranks.main
    )
    for i in range(first, steps):
        idx = perm[i * cfg.batch_size : (i + 1) * cfg.batch_size][ranks.rank :: ranks.world]  # this rank's shard
        eps = torch.randn(cfg.batch_size, model.config.latent_dim, device=device)[ranks.rank :: ranks.world]
        beta = kl_weight(cfg, epoch, i, steps)
        done = (epoch - 1) * steps + i  # steps taken before this one
        for group in loop.optimizer.param_groups:
            group["lr"] = learning_rate(cfg, done, steps)
        x = binarize(to_float(loop.train_x[idx]), cfg.binarize)  # a fresh draw per batch when dynamic
        prior_z = (
            torch.randn(cfg.batch_size, model.config.latent_dim, device=device)[ranks.rank :: ranks.world]
            if loop.objective.needs_prior_sample
            else None
        )
        loss = loop.stepper((x, loop.train_y[idx], eps, prior_z), beta, steady=done >= warmup_steps(cfg, steps) - 1)
        if (device.type == "cpu" or i % 25 == 24) and not torch.isfinite(loss[0]):
            untouched = done == 0  # no update yet: the model or the data, not the learning rate
            raise Diverged(
                f"the loss became non-finite in epoch {epoch} at step {i + 1} of {steps}. "
                + (first_step_advice() if untouched else divergence_advice(cfg, loop.run_dir, saved_at))
            )
        sums += loss
        tell_step(loop.callbacks, done + 1, loss, loop.optimizer, beta, epoch)
        bar.update(cfg.batch_size)
        if i % 25 == 24:
            bar.set_postfix(loss=f"{sums[0].item() / (i + 1):.1f}")  # host sync every 25 steps only
        if stop_requested(stop, i, steps, device, ranks) and i + 1 < steps:  # on the last step: at the end
            checkpoint_inside(loop, epoch - 1, i + 1, sums, time.perf_counter() - started, order_state)
            bar.close()
            raise interrupted(stop, f"in epoch {epoch} after step {i + 1} of {steps}", loop.run_dir)
    bar.close()
    return sums, started


def checkpoint_inside(loop: Loop, epochs_done: int, step: int, sums, seconds: float, order_state) -> None:
    """The checkpoint of a run stopped inside an epoch: after `step` steps of the next, with their sums."""
    sums = sum_all(sums, loop.ranks) / loop.ranks.world  # every rank resumes from the mean partial sums
    if loop.ranks.main:
        rng = {**rng_state(loop.order, loop.device), "order": order_state}
        where = {"epoch": epochs_done, "step": step, "sums": sums.tolist(), "seconds": seconds}
        where |= speed.scaler_state(loop.stepper)
        runs.save_checkpoint(loop.run_dir / runs.CHECKPOINT, loop.model, loop.cfg.model, loop.optimizer, where, rng)
    distributed.wait_for_all(loop.ranks)  # the others stop once it is written (see the end of fit)


def interrupted(stop: StopSignals, where: str, run_dir: Path) -> Interrupted:
    """The error that ends training stopped by a signal, once its checkpoint is written: a stop on an
    epoch's last step waits for that epoch's end, so every stop leaves a position training resumes from."""
    signum = stop.signum or signal.SIGTERM  # a rank told to stop by another rank
    return Interrupted(
        f"stopped by {signal.Signals(signum).name} {where}; checkpoint written. "
        f"Continue with: vaelab train --resume {run_dir}",
        signum,
    )


def end_of_epoch(
    run_dir: Path,
    cfg: TrainConfig,
    model,
    optimizer,
    position: dict,
    rng: dict,
    row: dict,
    recon: np.ndarray,
    config: dict | None,
    callbacks,
    name: str = "",
) -> None:
    """Commit the epoch's files, say how it went (`name`: which run, when several train at once),
    and tell the callbacks."""
    runs.commit_epoch(run_dir, model, cfg.model, optimizer, position, rng, row, recon, config)
    log.info(
        f"{name + ': ' if name else ''}epoch {row['epoch']}/{cfg.epochs}  train {row['train_total']:.2f} "
        f"(recon {row['train_recon']:.2f}, "
        f"KL {row['train_kl']:.2f})  test {row['test_total']:.2f}  test ELBO {row['test_elbo']:.2f}  "
        f"{row['seconds']:.1f} s  {row['images_per_second']:,.0f} img/s"
    )
    for callback in callbacks:
        callback.on_epoch_end(row, run_dir)
    if row["epoch"] == cfg.epochs and (notice := collapse_notice(row, cfg, run_dir)):
        log.info(notice)


def tell_step(callbacks, step: int, loss: torch.Tensor, optimizer, beta, epoch: int) -> None:
    """on_step of the callbacks whose step_every divides `step` (one wait for the device then)."""
    due = [c for c in callbacks if step % c.step_every == 0]
    if due:
        total, recon, kl = loss[:3].tolist()
        values = {
            "loss": total,
            "recon": recon,
            "kl": kl,
            "lr": optimizer.param_groups[0]["lr"],
            "beta": float(beta),
            "epoch": epoch,
        }
        for callback in due:
            callback.on_step(step, values)
