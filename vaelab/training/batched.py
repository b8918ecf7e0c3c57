"""Many runs of one model shape trained as one batched model (vaelab/training/stack.py): a seed
band, a β, MMD-weight or learning-rate sweep in about the time of one run where the device has room.

Each run is still the run it would be alone (tests/training/test_batched.py checks it):
    weights   built from its own seed exactly as `train` builds them
    data      its own order generator, seeded by its seed: its own permutation every epoch
    noise     its own generator, holding the state the default generator has when the run trains
              alone, drawn in the same order (eps, a dynamic binarisation, the MMD's prior draws);
              its checkpoint keeps that state where a lone run keeps the default one's
    Adam      its own, over its slices of the stacked weights, with its own learning rate and
              warm-up, β and KL warm-up, MMD weight and gradient clipping
    folder    its own, written by the single loop's end-of-epoch commit (loop.end_of_epoch), so it
              resumes, reports and compares like any run, alone or again in a batch
A run whose loss becomes non-finite leaves the batch with its message (its folder keeps its last
good epoch) while the others go on; SIGINT/SIGTERM write every run's checkpoint after the current
step. What runs must share to be batched: `batch_key`.
"""

import json
import logging
import signal
import time
from contextlib import ExitStack
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path

import numpy as np
import torch

from vaelab import runs
from vaelab.config import TrainConfig
from vaelab.data import ImageData, load_dataset
from vaelab.data.pixels import binarize, binarized_set, binarized_train_set, to_float
from vaelab.device import resolve_device
from vaelab.errors import VaelabError
from vaelab.losses import Objective
from vaelab.models import custom
from vaelab.progress import bar as progress_bar
from vaelab.training import speed
from vaelab.training.advice import divergence_advice, first_step_advice
from vaelab.training.distributed import Ranks
from vaelab.training.loop import (
    check_batch_fits,
    end_of_epoch,
    evaluate,
    fixed_images,
    metrics_row,
    reconstructions,
    start_position,
)
from vaelab.training.schedule import kl_weight, learning_rate, warmup_steps
from vaelab.training.stack import Adams, Stack, batched_step, noise_generator
from vaelab.training.start import new_model, resumed_config
from vaelab.training.state import restore
from vaelab.training.stopping import Interrupted, StopSignals

log = logging.getLogger(__name__)
SHARED = ("model", "dataset", "data_dir", "epochs", "batch_size", "objective", "likelihood", "gaussian_std", "kl")
SHARED += ("mmd_codes", "binarize", "device", "speed", "precision")  # the settings runs of one batch must share


def batch_key(cfg: TrainConfig, model_config) -> tuple | None:
    """What runs must share to train as one batched model: the model and its shapes, the data, the
    epochs and batch size, the objective's form and how the step runs. None for a run that trains
    alone: your own model, fp16 (one gradient scaler would skip every run's step when one overflows)
    and compile."""
    if cfg.model == custom.NAME or cfg.precision == "fp16" or cfg.speed == "compile":
        return None
    return (*(getattr(cfg, k) for k in SHARED), repr(model_config))


def saved_position(run_dir: Path) -> tuple[int, int]:
    """(epochs done, steps done in the next) of a run's checkpoint, (0, 0) without one: runs resumed
    as one batch must stand at one position."""
    path = Path(run_dir) / runs.CHECKPOINT
    if not path.is_file():
        return (0, 0)
    tensors, _ = runs.read_safetensors(path)
    position = json.loads(bytes(tensors["meta.json"].numpy()))["position"]
    return (position["epoch"], position["step"])


@dataclass(eq=False)
class Member:
    """One run of a batch: its settings, folder, model, Adam and generators."""

    cfg: TrainConfig
    model: torch.nn.Module
    order: torch.Generator  # the data order
    noise: torch.Generator | None = None  # posterior noise, dynamic binarisation, prior draws
    host_state: torch.Tensor | None = None  # the CPU generator's state a checkpoint keeps on CUDA
    run_dir: Path | None = None
    optimizer: torch.optim.Adam | None = None
    position: dict | None = None
    saved_at: str | None = None  # where its last good checkpoint stands

    def take_noise(self, device: torch.device) -> None:
        """Its noise generator from the default ones now (after its seed and its weights, or its checkpoint)."""
        self.noise, self.host_state = noise_generator(device), torch.get_rng_state()

    def rng(self, device: torch.device, order_state: torch.Tensor | None = None) -> dict:
        """What its checkpoint keeps of the generators, under the names a lone run's has (state.rng_state)."""
        order = self.order.get_state() if order_state is None else order_state
        if device.type == "cuda":
            return {"torch": self.host_state, "order": order, "cuda": self.noise.get_state()}
        return {"torch": self.noise.get_state(), "order": order}


def train_batched(
    cfgs: list[TrainConfig],
    options: list[dict],
    outs: list,
    *,
    overwrite: bool = False,
    progress: bool = True,
    data: ImageData | None = None,
) -> list[tuple[Path, str | None]]:
    """Train new runs of one shape (equal `batch_key`) as one model; run r goes to outs[r]. Returns
    (run folder, None when it finished or the message that stopped it) per run, in order."""
    keys = {batch_key(cfg, None) for cfg in cfgs}
    if len(keys) != 1 or None in keys:
        raise VaelabError("runs trained as one batch must share the settings of vaelab.training.batched.SHARED")
    with StopSignals() as stop:
        device = resolve_device(cfgs[0].device)
        data = data if data is not None else load_dataset(cfgs[0].dataset, cfgs[0].data_dir)
        check_batch_fits(cfgs[0].batch_size, len(data.train_x))
        members = []
        for cfg, opts in zip(cfgs, options, strict=True):
            torch.manual_seed(cfg.seed)  # as `train` does: weights, then the noise from the same seed
            member = Member(cfg, new_model(cfg, opts, data).to(device), torch.Generator().manual_seed(cfg.seed))
            member.take_noise(device)
            members.append(member)
        if len({repr(m.model.config) for m in members}) != 1:
            raise VaelabError("runs trained as one batch must have models of one shape; train them one by one")
        with ExitStack() as held:
            for member, out in zip(members, outs, strict=True):
                member.run_dir = runs.new_run_dir(member.cfg.model, member.cfg.dataset, str(out), overwrite)
                held.enter_context(runs.RunLock(member.run_dir))
                runs.clear_run(member.run_dir)
                runs.write_config(member.run_dir, runs.describe(member.cfg, member.model, data, device))
            return fit_batched(members, data, stop, progress=progress)


def resume_batched(run_dirs: list, *, progress: bool = True) -> list[tuple[Path, str | None]]:
    """Continue runs of one shape from their checkpoints, which stand at one position, as one batch."""
    with ExitStack() as held:
        members = []
        for run_dir in map(runs.run_folder, run_dirs):
            held.enter_context(runs.RunLock(run_dir))
            runs.recover(run_dir)
            if not (run_dir / runs.CHECKPOINT).is_file():
                raise VaelabError(
                    f"{run_dir} has no checkpoint yet (it stopped before its first one); "
                    f"start again with `vaelab train ... --out {run_dir} --overwrite`"
                )
            saved = runs.read_config(run_dir)
            cfg = resumed_config(saved, {}, run_dir / runs.CONFIG)
            model = runs.rebuild(saved, run_dir).to(resolve_device(cfg.device))
            members.append(Member(cfg, model, torch.Generator(), run_dir=run_dir))
        with StopSignals() as stop:
            data = load_dataset(members[0].cfg.dataset, members[0].cfg.data_dir)
            return fit_batched(members, data, stop, progress=progress, resume=True)


def fit_batched(
    members: list[Member], data: ImageData, stop: StopSignals, *, progress: bool = True, resume: bool = False
) -> list[tuple[Path, str | None]]:
    """The loop of vaelab/training/loop.py for every member at once: the step is one, the epoch's
    evaluation and commit are each run's own."""
    cfg = members[0].cfg  # what they share
    objective = Objective.from_settings(cfg)
    device = next(members[0].model.parameters()).device
    how = replace(speed.plan(cfg.speed, device, members[0].model, 1, cfg.precision), channels_last=False)
    speed.prepare(how, members[0].model)  # channels-last: a 5-d batch has no such layout
    train_x, train_y = binarized_train_set(data.train_x, cfg.binarize).to(device), data.train_y.to(device)
    test_y, shown = data.test_y.to(device), fixed_images(data).to(device)
    steps = -(-len(train_x) // cfg.batch_size)
    tests = {}  # the test images each run is scored on (a dynamic binarisation depends on its seed)

    def test_sets(c: TrainConfig) -> torch.Tensor:
        key = c.seed if c.binarize == "dynamic" else None
        if key not in tests:
            tests[key] = binarized_set(data.test_x, c.binarize, "test", c.seed).to(device)
        return tests[key]

    for m in members:
        m.optimizer = torch.optim.Adam(m.model.parameters(), lr=m.cfg.lr, fused=True, capturable=speed.capturable(how))
        m.position = start_position(objective)
        if resume:
            restored = restore(m.run_dir, m.cfg, objective, m.model, m.optimizer, m.order, how, steps, Ranks())
            m.position, m.saved_at = restored
            m.take_noise(device)  # restore put the run's saved states into the default generators
    if len({(m.position["epoch"], m.position["step"]) for m in members}) != 1:
        raise VaelabError("runs resumed as one batch must stand at one position; resume them one by one")
    outcome = {m.run_dir: None for m in members}
    active, stepper = list(members), None

    def regroup():
        nonlocal stepper
        step = partial(
            batched_step,
            objective=objective,
            clip_grads=[m.cfg.clip_grad for m in active],
            mmd_weights=torch.tensor([m.cfg.mmd_weight for m in active], device=device),
        )
        stepper = speed.Stepper(step, how, Stack([m.model for m in active]), Adams(m.optimizer for m in active))

    def drop(bad: list[Member], message: str, untouched: bool = False) -> None:
        for m in bad:
            advice = first_step_advice() if untouched else divergence_advice(m.cfg, m.run_dir, m.saved_at)
            outcome[m.run_dir] = f"{m.run_dir.name}: {message} {advice}"
            log.error(outcome[m.run_dir])
        active[:] = [m for m in active if m not in bad]
        if active:
            regroup()

    regroup()
    log.info(f"training {len(active)} runs as one batched model ({how.describe()})")
    start = members[0].position
    for epoch in range(start["epoch"] + 1, cfg.epochs + 1):
        order_states = [m.order.get_state() for m in active]  # a checkpoint inside the epoch redraws it
        perm = torch.stack([torch.randperm(len(train_x), generator=m.order) for m in active]).to(device)
        perm = torch.cat([perm, perm[:, : steps * cfg.batch_size - len(train_x)]], dim=1)  # whole batches
        first = start["step"] if epoch == start["epoch"] + 1 else 0
        sums = torch.tensor([m.position["sums"] if first else start_position(objective)["sums"] for m in active])
        sums, carried = sums.to(device), [m.position["seconds"] if first else 0.0 for m in active]
        started = time.perf_counter()
        bar = progress_bar(steps * cfg.batch_size, first * cfg.batch_size, f"epoch {epoch}/{cfg.epochs}", show=progress)
        for i in range(first, steps):
            idx = perm[:, i * cfg.batch_size : (i + 1) * cfg.batch_size]  # [N, B]
            x, eps, prior_z = draws(active, to_float(train_x[idx]), objective, device)
            done = (epoch - 1) * steps + i
            for m in active:
                for group in m.optimizer.param_groups:
                    group["lr"] = learning_rate(m.cfg, done, steps)
            betas = [kl_weight(m.cfg, epoch, i, steps) for m in active]
            steady = done >= max(warmup_steps(m.cfg, steps) for m in active) - 1
            loss = stepper((x, train_y[idx], eps, prior_z), betas, steady=steady)
            if device.type == "cpu" or i % 25 == 24:
                finite = torch.isfinite(loss[:, 0]).tolist()
                if not all(finite):
                    where = f"the loss became non-finite in epoch {epoch} at step {i + 1} of {steps}."
                    drop([m for m, ok in zip(active, finite, strict=True) if not ok], where, untouched=done == 0)
                    keep = torch.tensor(finite, device=device)
                    sums, loss, perm = sums[keep], loss[keep], perm[keep]
                    carried = [c for c, ok in zip(carried, finite, strict=True) if ok]
                    order_states = [s for s, ok in zip(order_states, finite, strict=True) if ok]
                    if not active:
                        break
            sums += loss
            bar.update(cfg.batch_size)
            if stop.signum is not None and i + 1 < steps:  # on the last step: at the end of the epoch
                for r, m in enumerate(active):
                    where = {"epoch": epoch - 1, "step": i + 1, "sums": sums[r].tolist()}
                    where["seconds"] = carried[r] + time.perf_counter() - started
                    rng = m.rng(device, order_states[r])
                    runs.save_checkpoint(m.run_dir / runs.CHECKPOINT, m.model, m.cfg.model, m.optimizer, where, rng)
                bar.close()
                raise interrupted(stop, f"in epoch {epoch} after step {i + 1} of {steps}")
        bar.close()
        if not active:
            break
        train_seconds = time.perf_counter() - started
        diverged = []
        for r, m in enumerate(active):
            evaluated = time.perf_counter()
            test = evaluate(m.model, test_sets(m.cfg), test_y, m.cfg)
            seconds = carried[r] + train_seconds + time.perf_counter() - evaluated
            speed_r = steps * cfg.batch_size / (carried[r] + train_seconds)
            row = metrics_row(epoch, objective, (sums[r] / steps).tolist(), test, seconds, speed_r)
            if not all(np.isfinite(v) for v in row.values()):
                diverged.append(m)
                continue
            m.position, m.saved_at = {**start_position(objective), "epoch": epoch}, f"end of epoch {epoch}"
            recon = reconstructions(m.model, test_sets(m.cfg)[shown], test_y[shown])
            rng, name = m.rng(device), m.run_dir.name
            end_of_epoch(m.run_dir, m.cfg, m.model, m.optimizer, m.position, rng, row, recon, None, (), name)
        if diverged:
            drop(diverged, f"the loss became non-finite in epoch {epoch}.")
        if epoch < cfg.epochs and stop.signum is not None:
            raise interrupted(stop, f"at the end of epoch {epoch}")
    return list(outcome.items())


def draws(active: list[Member], x: torch.Tensor, objective: Objective, device: torch.device) -> tuple:
    """Each run's draws for one step from its own generator, in the lone loop's order: eps, the
    dynamic binarisation of its batch x[r] (in place), the prior's draws. Returns (x, eps, prior_z)."""
    batch, latent = x.shape[1], active[0].model.config.latent_dim
    eps, prior_z = [], []
    for r, m in enumerate(active):
        eps.append(torch.randn(batch, latent, generator=m.noise, device=device))
        if m.cfg.binarize == "dynamic":
            x[r] = binarize(x[r], m.cfg.binarize, m.noise)
        if objective.needs_prior_sample:
            prior_z.append(torch.randn(batch, latent, generator=m.noise, device=device))
    return x, torch.stack(eps), torch.stack(prior_z) if prior_z else None


def interrupted(stop: StopSignals, where: str) -> Interrupted:
    """The error that ends a batch stopped by a signal, once every run's checkpoint is written."""
    signum = stop.signum or signal.SIGTERM
    return Interrupted(
        f"stopped by {signal.Signals(signum).name} {where}; every run of the batch has its checkpoint. "
        f"Continue with the same command (a sweep keeps its finished runs and resumes the others), "
        f"or one run with: vaelab train --resume RUN",
        signum,
    )
