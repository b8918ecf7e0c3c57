"""Training settings as one typed dataclass: each field's default, help and checks live here once
(the CLI derives its flags from them, vaelab/flags.py).
"""
from dataclasses import dataclass
from pathlib import Path

from vaelab.device import DEVICES
from vaelab.errors import VaelabError
from vaelab.losses import KL_ESTIMATORS, LIKELIHOODS, OBJECTIVES
from vaelab.models import MODELS, custom
from vaelab.options import MAX_SEED, check, opt
from vaelab.pixels import BINARIZE_MODES
from vaelab.speed import PRECISIONS, SPEEDS

DATASET_NAMES = ("mnist", "fashion-mnist", "cifar10", "mnist-sample")
RESUME_OVERRIDES = ("epochs", "lr", "clip_grad", "speed")  # what may change when a run is continued


@dataclass(frozen=True)
class TrainConfig:
    model: str = opt("conv", "model to train ('custom': a module of your own, trained from Python)",
                     choices=(*MODELS, custom.NAME))
    dataset: str = opt("mnist", f"data set: {', '.join(DATASET_NAMES)}, or your own images as "
                                 "folder:PATH (a sub-folder per class, or flat) or npz:FILE (arrays x, y)")
    data_dir: str | None = opt(None, "folder holding the data set's original files (searched first)")
    epochs: int = opt(10, "passes over the training set", min=1)
    batch_size: int = opt(128, "images per optimisation step", min=1)
    lr: float = opt(1e-3, "Adam learning rate", above=0.0)
    lr_warmup: int = opt(0, "steps (at most one epoch) over which the learning rate rises linearly to --lr "
                             "(0: none); 100 can help the conv models at small batches", min=0)
    beta: float = opt(1.0, "weight of the KL term (1 gives the ELBO)", min=0.0)
    kl_warmup: float = opt(0.0, "epochs over which the KL weight rises linearly from 0 to beta", min=0.0)
    objective: str = opt("elbo", "elbo, or mmd: InfoVAE's MMD to N(0, I) instead of the KL", choices=OBJECTIVES)
    mmd_weight: float = opt(1000.0, "weight of the MMD term when --objective mmd (InfoVAE uses 1000)", above=0.0)
    clip_grad: float | None = opt(None, "clip the gradient norm to this value", above=0.0)
    likelihood: str = opt("bernoulli", "p(x|z): Bernoulli (BCE from logits) or Gaussian", choices=LIKELIHOODS)
    gaussian_std: float = opt(0.1, "fixed pixel standard deviation of the Gaussian likelihood", above=0.0)
    kl: str = opt("analytic", "KL term: closed form, or single-sample Monte Carlo (log q - log p)", choices=KL_ESTIMATORS)
    binarize: str = opt("none", "pixels as the model sees them: grey (none), one fixed Bernoulli draw (static) or a fresh draw each batch (dynamic)", choices=BINARIZE_MODES)
    seed: int = opt(0, "seed of weights, data order and z samples", min=0, max=MAX_SEED)
    device: str = opt("auto", "where to train; auto picks CUDA when present", choices=DEVICES)
    eval_batch_size: int = opt(1000, "images per batch when evaluating the test set", min=1)
    speed: str = opt("auto", "how the step runs (same maths): auto = a CUDA graph on one GPU, channels-last "
                              "convolutions on the CPU; or eager, graph (CUDA), compile", choices=SPEEDS)
    precision: str = opt("fp32", "fp32, or bf16: forward and loss under bfloat16 autocast (weights and Adam stay fp32)",
                          choices=PRECISIONS)

    def __post_init__(self):
        check(self)


def divergence_advice(cfg: TrainConfig, run_dir: Path, saved_at: str | None) -> str:
    """What to do after a non-finite loss: the settings that make the loss large, then a lower
    learning rate and clipping, from the last checkpoint when there is one."""
    large = []
    if cfg.objective == "elbo" and cfg.beta > 1:
        large.append(f"--beta {cfg.beta:g} (weights the KL {cfg.beta:g} times)")
    if cfg.likelihood == "gaussian" and cfg.gaussian_std < 0.1:
        large.append(f"--gaussian-std {cfg.gaussian_std:g} (scales the reconstruction by {1 / cfg.gaussian_std ** 2:.3g})")
    if cfg.objective == "mmd" and cfg.mmd_weight > 1000:
        large.append(f"--mmd-weight {cfg.mmd_weight:g}")
    cause = (f"These settings make the loss large: {'; '.join(large)}; train again with smaller values "
             f"(a resumed run keeps them). " if large else "")
    lower = f"--lr {cfg.lr / 10:g} --clip-grad {cfg.clip_grad / 2 if cfg.clip_grad else 10:g}"
    if saved_at is None:
        return (cause + f"No checkpoint was written yet (that happens at the end of the first epoch). Train again "
                        f"with a lower learning rate and gradient clipping (now --lr {cfg.lr:g}): {lower} "
                        f"--overwrite, and --kl-warmup 1 if the KL term is the one that grows")
    return (cause + f"The last good checkpoint ({saved_at}) is kept in {run_dir}. Try a lower learning rate "
                    f"(now {cfg.lr:g}) or gradient clipping from there: vaelab train --resume {run_dir} {lower}")


def resumed_config(saved: dict, overrides: dict, path: Path) -> TrainConfig:
    """The saved settings with `overrides`; they reach config.json with the first epoch that
    finishes under them (a new --lr that diverges at once is never saved)."""
    try:
        return TrainConfig(**{**saved["train"], **{k: v for k, v in overrides.items() if v is not None}})
    except TypeError as e:  # a setting this vaelab does not know
        raise VaelabError(f"{path}: the training settings do not fit this vaelab ({e}): "
                          f"resume it with the vaelab version that wrote it") from None
