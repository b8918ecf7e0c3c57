"""What training says when it goes wrong: after a divergence, and when it ends with the posterior
collapsed. Each message names the cause it can see and the next command to try."""

from pathlib import Path

from vaelab.config import TrainConfig
from vaelab.losses import Objective
from vaelab.options import CALLER, as_given


def divergence_advice(cfg: TrainConfig, run_dir: Path, saved_at: str | None) -> str:
    """What to do after a non-finite loss: the settings that make the loss large, then a lower
    learning rate and clipping, from the last checkpoint when there is one; in the caller's words
    (flags on the command line, keywords in Python)."""
    cli = CALLER.get() == "cli"
    large = Objective.from_settings(cfg).large_settings()
    cause = (
        "These settings make the loss large: "
        + "; ".join(f"{as_given(name, value)} ({what})" for name, value, what in large)
        + "; train again with smaller values (a resumed run keeps them). "
        if large
        else ""
    )
    lower = [as_given("lr", cfg.lr / 10), as_given("clip_grad", cfg.clip_grad / 2 if cfg.clip_grad else 10.0)]
    if saved_at is None:
        again = " ".join([*lower, "--overwrite"]) if cli else ", ".join([*lower, "overwrite=True"])
        return (
            cause + f"No checkpoint was written yet (that happens at the end of the first epoch). Train again "
            f"with a lower learning rate and gradient clipping (now {as_given('lr', cfg.lr)}): {again}, and "
            f"{as_given('kl_warmup', 1.0)} if the KL term is the one that grows"
        )
    go_on = (
        f"vaelab train --resume {run_dir} {' '.join(lower)}"
        if cli
        else f"vaelab.resume({str(run_dir)!r}, {', '.join(lower)})"
    )
    return (
        cause + f"The last good checkpoint ({saved_at}) is kept in {run_dir}. Try a lower learning rate "
        f"(now {as_given('lr', cfg.lr)}) or gradient clipping from there: {go_on}"
    )


def first_step_advice() -> str:
    """What to say when the loss is not finite at the very first step, before any weight was updated:
    the learning rate cannot be the cause (the model's outputs were checked finite on two images)."""
    return (
        "It was not finite at the first step, before any weight was updated, so the learning rate is not the "
        "cause: the model's output (the logits, mu or logvar) or the loss overflowed on this batch. Check the "
        "model's forward pass: a log or a division of something that can be 0, an exp of something large; the "
        "encoder returns log σ² (not σ), the decoder logits (not probabilities)"
    )


def collapse_notice(row: dict, cfg: TrainConfig, run_dir: Path) -> str | None:
    """What to do when training ends with the posterior collapsed: z says next to nothing about the
    image (vaelab.losses.Objective.collapse), whatever the objective."""
    objective = Objective.from_settings(cfg)
    sign = objective.collapse(row["test_kl"], row.get("test_mmd"))
    if sign is None:
        return None
    what = (
        f"note: {sign}: the posterior has collapsed, so z carries almost nothing about the image and every "
        f"sample looks alike."
    )
    if fix := objective.collapse_fix():
        setting, value, advice = fix
        return f"{what} {advice.format(as_given(setting, value))}"
    more = (
        f"vaelab train --resume {run_dir} --epochs {cfg.epochs + 10}"
        if CALLER.get() == "cli"
        else f"vaelab.resume({str(run_dir)!r}, epochs={cfg.epochs + 10})"
    )
    fresh = [as_given("kl_warmup", 1.0), as_given("batch_size", 32)]
    other_seed = "another --seed" if CALLER.get() == "cli" else "another seed="
    fresh += [f"{as_given('beta', 1.0)} (now {cfg.beta:g})" if cfg.beta > 1 else other_seed]
    return (
        f"{what} With the conv models this happens when the encoder's small ReLU layer dies in the first steps. "
        f"It can recover with more epochs ({more}); a fresh run with {', '.join(fresh[:2])} or {fresh[2]} "
        f"usually avoids it."
    )
