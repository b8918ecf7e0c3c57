"""What training says when it goes wrong: after a divergence, and when it ends with the posterior
collapsed. Each message names the cause it can see and the next command to try."""

from pathlib import Path

from vaelab.config import TrainConfig
from vaelab.losses import Objective

COLLAPSED_KL = 0.05  # nats per image: below this the code tells the decoder next to nothing


def divergence_advice(cfg: TrainConfig, run_dir: Path, saved_at: str | None) -> str:
    """What to do after a non-finite loss: the settings that make the loss large, then a lower
    learning rate and clipping, from the last checkpoint when there is one."""
    large = Objective.from_settings(cfg).large_settings()
    cause = (
        f"These settings make the loss large: {'; '.join(large)}; train again with smaller values "
        f"(a resumed run keeps them). "
        if large
        else ""
    )
    lower = f"--lr {cfg.lr / 10:g} --clip-grad {cfg.clip_grad / 2 if cfg.clip_grad else 10:g}"
    if saved_at is None:
        return (
            cause + f"No checkpoint was written yet (that happens at the end of the first epoch). Train again "
            f"with a lower learning rate and gradient clipping (now --lr {cfg.lr:g}): {lower} "
            f"--overwrite, and --kl-warmup 1 if the KL term is the one that grows"
        )
    return (
        cause + f"The last good checkpoint ({saved_at}) is kept in {run_dir}. Try a lower learning rate "
        f"(now {cfg.lr:g}) or gradient clipping from there: vaelab train --resume {run_dir} {lower}"
    )


def collapse_notice(row: dict, cfg: TrainConfig, run_dir: Path) -> str | None:
    """What to do when training ends with the posterior collapsed (test KL near 0)."""
    if not Objective.from_settings(cfg).minimises_kl or row["test_kl"] >= COLLAPSED_KL:
        return None
    return (
        f"note: the test KL is {row['test_kl']:.3f} nats: the posterior has collapsed, so z carries almost "
        f"nothing about the image and every sample looks alike. With the conv models this happens when the "
        f"encoder's small ReLU layer dies in the first steps. It can recover with more epochs (vaelab train "
        f"--resume {run_dir} --epochs {cfg.epochs + 10}); a fresh run with --kl-warmup 1, --batch-size 32"
        + (f" or --beta 1 (now {cfg.beta:g})" if cfg.beta > 1 else " or another --seed")
        + " usually avoids it."
    )
