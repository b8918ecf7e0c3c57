"""Training settings as one typed dataclass: each field's default, help and checks live here once
(the CLI derives its flags from them, vaelab/cli/flags.py).
"""

from dataclasses import dataclass

from vaelab.data.pixels import BINARIZE_MODES
from vaelab.device import DEVICES, device_problem
from vaelab.losses import KL_ESTIMATORS, LIKELIHOODS, MMD_CODES, OBJECTIVES
from vaelab.models import MODELS, custom
from vaelab.options import MAX_EPOCHS, MAX_SEED, MAX_STEPS, check, opt

DATASET_NAMES = ("mnist", "fashion-mnist", "cifar10", "mnist-sample")
RESUME_OVERRIDES = ("epochs", "lr", "clip_grad", "speed")  # what may change when a run is continued
SPEEDS = ("auto", "eager", "graph", "compile")  # how the step runs: vaelab/training/speed.py
PRECISIONS = ("fp32", "bf16", "fp16")


# Settings added after runs were saved without them, with the value those runs were trained with:
# a resumed old run goes on as it began (the MMD compared sampled codes before --mmd-codes).
SAVED_BEFORE = {"mmd_codes": "sample"}


@dataclass(frozen=True)
class TrainConfig:
    """Every training setting, with its default and its checks: `vaelab train`'s flags and
    `vaelab.train`'s keywords are these fields, and a run's config.json keeps them.

    Examples:
        >>> cfg = vaelab.TrainConfig(model="conv", dataset="mnist-sample", epochs=5)
        >>> cfg.batch_size
        128
    """

    model: str = opt(
        "conv", "model to train ('custom': a module of your own, trained from Python)", choices=(*MODELS, custom.NAME)
    )
    dataset: str = opt(
        "mnist",
        f"data set: {', '.join(DATASET_NAMES)}, or your own images as "
        "folder:PATH (a sub-folder per class, or flat) or npz:FILE (arrays x, y)",
    )
    data_dir: str | None = opt(None, "folder holding the data set's original files (searched first)")
    epochs: int = opt(10, "passes over the training set", min=1, cap=MAX_EPOCHS)
    batch_size: int = opt(128, "images per optimisation step", min=1)
    lr: float = opt(1e-3, "Adam learning rate", above=0.0)
    lr_warmup: int = opt(
        0,
        "steps (at most one epoch) over which the learning rate rises linearly to --lr "
        "(0: none); 100 can help the conv models at small batches",
        min=0,
        cap=MAX_STEPS,
    )
    beta: float = opt(1.0, "weight of the KL term (1 gives the ELBO)", min=0.0)
    kl_warmup: float = opt(
        0.0, "epochs over which the KL weight rises linearly from 0 to beta", min=0.0, cap=MAX_EPOCHS
    )
    objective: str = opt("elbo", "elbo, or mmd: InfoVAE's MMD to N(0, I) instead of the KL", choices=OBJECTIVES)
    mmd_weight: float = opt(1000.0, "weight of the MMD term when --objective mmd (InfoVAE uses 1000)", above=0.0)
    mmd_codes: str = opt(
        "mean",
        "codes the MMD compares with N(0, I) draws: encoder means (the MMD-VAE), or sampled z, whose "
        "collapse onto the prior the MMD cannot see",
        choices=MMD_CODES,
    )
    clip_grad: float | None = opt(None, "clip the gradient norm to this value", above=0.0)
    likelihood: str = opt("bernoulli", "p(x|z): Bernoulli (BCE from logits) or Gaussian", choices=LIKELIHOODS)
    gaussian_std: float = opt(0.1, "fixed pixel standard deviation of the Gaussian likelihood", above=0.0)
    kl: str = opt(
        "analytic", "KL term: closed form, or single-sample Monte Carlo (log q - log p)", choices=KL_ESTIMATORS
    )
    binarize: str = opt(
        "none",
        "pixels as the model sees them: grey (none), one fixed Bernoulli draw (static) or a fresh draw each batch "
        "(dynamic)",
        choices=BINARIZE_MODES,
    )
    seed: int = opt(0, "seed of weights, data order and z samples", min=0, max=MAX_SEED)
    device: str = opt(
        "auto",
        f"where to train: {', '.join(DEVICES)} or cuda:N; auto picks a CUDA GPU, then Apple's (mps)",
        valid=device_problem,
    )
    eval_batch_size: int = opt(1000, "images per batch when evaluating the test set", min=1, cap=100_000)
    speed: str = opt(
        "auto",
        "how the step runs (same maths): auto = a CUDA graph on one GPU, channels-last "
        "convolutions on the CPU; or eager, graph (CUDA), compile",
        choices=SPEEDS,
    )
    precision: str = opt(
        "fp32",
        "fp32; bf16: forward and loss under bfloat16 autocast (weights and Adam stay fp32); fp16: under "
        "float16 autocast with a gradient scaler (GPUs without bfloat16, such as Colab's T4)",
        choices=PRECISIONS,
    )

    def __post_init__(self):
        check(self)
