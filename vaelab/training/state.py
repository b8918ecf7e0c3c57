"""What a checkpoint restores: the weights and Adam, checked against the run; the random generators'
states; the layout of Adam's moments."""

import logging
from pathlib import Path

import torch

from vaelab import runs
from vaelab.config import TrainConfig
from vaelab.errors import VaelabError
from vaelab.losses import Objective
from vaelab.training import speed
from vaelab.training.distributed import Ranks

log = logging.getLogger(__name__)


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
            raise VaelabError(
                f"the checkpoint's CUDA generator state is not one this GPU takes ({e}): "
                f"the file is damaged; restore it from a copy, or train the run again"
            ) from None


def match_layouts(optimizer) -> None:
    """Give Adam's loaded moments their parameter's memory layout (channels-last or not): the
    fused kernel walks parameter and moments in step, so their strides must agree."""
    for group in optimizer.param_groups:
        for p in group["params"]:
            state = optimizer.state.get(p, {})
            for key, value in state.items():
                if value.shape == p.shape and value.stride() != p.stride():
                    state[key] = torch.empty_like(p).copy_(value)


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
