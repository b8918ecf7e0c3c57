"""The training loop: one function, `fit`, read top to bottom.

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
from vaelab.training.state import match_layouts, rng_state, set_rng_state
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
    order = torch.Generator().manual_seed(cfg.seed)  # data order, apart from weight init and z
    position = start_position(objective)
    train_x, train_y = binarized_train_set(data.train_x, cfg.binarize).to(device), data.train_y.to(device)
    test_x, test_y = binarized_set(data.test_x, cfg.binarize, "test", cfg.seed).to(device), data.test_y.to(device)
    shown = fixed_images(data).to(device)
    check_batch_fits(cfg.batch_size, len(train_x))
    steps = -(-len(train_x) // cfg.batch_size)  # ceil: dropping the partial batch cost mnist-sample 3% of its steps
    saved_at = None  # where the last good checkpoint stands, for the advice after a divergence
    if resume:
        position, saved_at = restore(run_dir, cfg, objective, model, optimizer, order, how, steps, ranks)
    stepper = speed.Stepper(
        partial(train_step, objective=objective, clip_grad=cfg.clip_grad), how, trained, optimizer, cfg.precision
    )
    speed.load_scaler(stepper, position)
    callbacks = callbacks if ranks.main else ()  # the process that writes the run folder tells
    for callback in callbacks:
        callback.on_train_begin(run_dir)

    def checkpoint(epochs_done, step, sums, seconds, order_state):
        sums = sum_all(sums, ranks) / ranks.world  # every rank resumes from the mean partial sums
        if ranks.main:
            rng = {**rng_state(order, device), "order": order_state}
            where = {"epoch": epochs_done, "step": step, "sums": sums.tolist(), "seconds": seconds}
            where |= speed.scaler_state(stepper)
            runs.save_checkpoint(run_dir / runs.CHECKPOINT, model, cfg.model, optimizer, where, rng)
        distributed.wait_for_all(ranks)  # the others stop once it is written (see the end of fit)

    for epoch in range(position["epoch"] + 1, cfg.epochs + 1):
        order_state = order.get_state()  # a checkpoint inside this epoch redraws the same permutation
        perm = torch.randperm(len(train_x), generator=order).to(device)
        perm = torch.cat([perm, perm[: steps * cfg.batch_size - len(perm)]])  # whole batches: static shapes
        first = position["step"] if epoch == position["epoch"] + 1 else 0
        sums = torch.tensor(position["sums"] if first else start_position(objective)["sums"], device=device)
        started = time.perf_counter() - (position["seconds"] if first else 0.0)
        bar = progress_bar(
            steps * cfg.batch_size, first * cfg.batch_size, f"epoch {epoch}/{cfg.epochs}", show=progress and ranks.main
        )
        for i in range(first, steps):
            idx = perm[i * cfg.batch_size : (i + 1) * cfg.batch_size][ranks.rank :: ranks.world]  # this rank's shard
            eps = torch.randn(cfg.batch_size, model.config.latent_dim, device=device)[ranks.rank :: ranks.world]
            beta = kl_weight(cfg, epoch, i, steps)
            done = (epoch - 1) * steps + i  # steps taken before this one
            for group in optimizer.param_groups:
                group["lr"] = learning_rate(cfg, done, steps)
            x = binarize(to_float(train_x[idx]), cfg.binarize)  # a fresh draw per batch when dynamic
            prior_z = (
                torch.randn(cfg.batch_size, model.config.latent_dim, device=device)[ranks.rank :: ranks.world]
                if objective.needs_prior_sample
                else None
            )
            loss = stepper((x, train_y[idx], eps, prior_z), beta, steady=done >= warmup_steps(cfg, steps) - 1)
            if (device.type == "cpu" or i % 25 == 24) and not torch.isfinite(loss[0]):
                untouched = done == 0  # no update yet: the model or the data, not the learning rate
                raise Diverged(
                    f"the loss became non-finite in epoch {epoch} at step {i + 1} of {steps}. "
                    + (first_step_advice() if untouched else divergence_advice(cfg, run_dir, saved_at))
                )
            sums += loss
            tell_step(callbacks, done + 1, loss, optimizer, beta, epoch)
            bar.update(cfg.batch_size)
            if i % 25 == 24:
                bar.set_postfix(loss=f"{sums[0].item() / (i + 1):.1f}")  # host sync every 25 steps only
            if stop_requested(stop, i, steps, device, ranks) and i + 1 < steps:  # on the last step: at the end
                checkpoint(epoch - 1, i + 1, sums, time.perf_counter() - started, order_state)
                bar.close()
                raise interrupted(stop, f"in epoch {epoch} after step {i + 1} of {steps}", run_dir)
        bar.close()
        train_means = (sum_all(sums, ranks) / (steps * ranks.world)).tolist()
        train_seconds = time.perf_counter() - started
        test = evaluate(model, test_x, test_y, cfg, ranks)
        seconds = time.perf_counter() - started
        row = metrics_row(epoch, objective, train_means, test, seconds, steps * cfg.batch_size / train_seconds)
        if not all(np.isfinite(v) for v in row.values()):
            raise Diverged(
                f"the loss became non-finite in epoch {epoch} ({row}). " + divergence_advice(cfg, run_dir, saved_at)
            )
        position = {**start_position(objective), "epoch": epoch, **speed.scaler_state(stepper)}
        saved_at = f"end of epoch {epoch}"
        if ranks.main:
            end_of_epoch(
                run_dir,
                cfg,
                model,
                optimizer,
                position,
                rng_state(order, device),
                row,
                reconstructions(model, test_x[shown], test_y[shown]),
                config,
                callbacks,
            )
        if epoch < cfg.epochs and stop_requested(stop, steps - 1, steps, device, ranks):  # it came on the last step
            distributed.wait_for_all(ranks)
            raise interrupted(stop, f"at the end of epoch {epoch}", run_dir)
    for callback in callbacks:
        callback.on_train_end(run_dir)
    distributed.wait_for_all(ranks)  # leave together, once rank 0 has written the last epoch
    if stop_requested(stop, steps - 1, steps, device, ranks):  # on the last epoch's last step: the run is
        signum = stop.signum or signal.SIGTERM  # complete, and the stop is not lost (no report is drawn)
        raise Interrupted(
            f"stopped by {signal.Signals(signum).name} at the end of epoch {cfg.epochs}, the last: the run is "
            f"complete; `vaelab report {run_dir}` draws its report",
            signum,
        )
    return run_dir


def interrupted(stop: StopSignals, where: str, run_dir: Path) -> Interrupted:
    """The error that ends training stopped by a signal, once its checkpoint is written: a stop on an
    epoch's last step waits for that epoch's end, so every stop leaves a position training resumes from."""
    signum = stop.signum or signal.SIGTERM  # a rank told to stop by another rank
    return Interrupted(
        f"stopped by {signal.Signals(signum).name} {where}; checkpoint written. "
        f"Continue with: vaelab train --resume {run_dir}",
        signum,
    )


def restore(
    run_dir: Path,
    cfg: TrainConfig,
    objective: Objective,
    model,
    optimizer,
    order: torch.Generator,
    how: speed.Plan,
    steps: int,
    ranks: Ranks,
) -> tuple[dict, str]:
    """Model, Adam and generators from the run's checkpoint, checked; returns (position, where it stands)."""
    device = next(model.parameters()).device
    position, rng = runs.load_checkpoint(run_dir / runs.CHECKPOINT, model, cfg.model, optimizer)
    set_rng_state(rng, order, device)
    for group in optimizer.param_groups:
        group["capturable"] = speed.capturable(how)  # this run's speed mode, not the saved one's
    match_layouts(optimizer)
    saved_at = runs.check_position(position, steps, cfg.epochs, len(objective.terms), run_dir / runs.CHECKPOINT)
    runs.check_adam_steps(optimizer, position["epoch"] * steps + position["step"], run_dir / runs.CHECKPOINT)
    notes = runs.resume_notes(runs.read_metrics(run_dir), position["epoch"], cfg.epochs, run_dir)
    for note in notes if ranks.main else []:
        log.info(note)
    return position, saved_at


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
