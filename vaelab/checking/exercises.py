"""The exercises a check knows: which pieces each asks for, and which of vaelab's models is its answer
(the architecture table, `vaelab summary MODEL`, and the reference band of its short training)."""

from dataclasses import dataclass

from vaelab.errors import VaelabError

MODULES = ("Encoder", "Decoder")
FUNCTIONS = ("reparameterize", "kl_divergence", "log_normal_pdf", "reconstruction_loss", "mmd")
PIECES = MODULES + FUNCTIONS  # the names a source is searched for, in the order they are checked
LOSS = ("reparameterize", "kl_divergence", "reconstruction_loss")


@dataclass(frozen=True)
class Exercise:
    """One exercise: what it asks a student to write, and vaelab's model that answers it (None: the
    exercise has no architecture, only functions)."""

    name: str
    about: str
    model: str | None
    required: tuple[str, ...]
    latent_dim: int = 2
    conditional: bool = False
    hidden: int | None = None  # width of the hidden layers, for a constructor that asks for it


EXERCISES = {
    e.name: e
    for e in (
        Exercise("mlp", "fully connected VAE, 784-512-2 (SPEC model 1)", "mlp", MODULES + LOSS, hidden=512),
        Exercise("mlp-small", "fully connected VAE the size of conv, 784-80-2", "mlp-small", MODULES + LOSS, hidden=80),
        Exercise("conv", "convolutional VAE: encoder 62,794 and decoder 65,089 parameters", "conv", MODULES + LOSS),
        Exercise("conv-small", "second published conv VAE: Dense 16, decoder 28,161", "conv-small", MODULES + LOSS),
        Exercise("cvae", "conditional convolutional VAE (label into both halves)", "cvae", MODULES + LOSS, 2, True),
        Exercise("cvae-mlp", "conditional fully connected VAE", "cvae-mlp", MODULES + LOSS, 2, True, 512),
        Exercise("losses", "the ELBO's pieces alone: reparameterisation, KL, reconstruction", None, LOSS),
        Exercise("mc-elbo", "the single-sample Monte Carlo ELBO from log-normal densities", None, ("log_normal_pdf",)),
        Exercise("mmd", "InfoVAE's MMD between posterior and prior samples", None, ("mmd",)),
    )
}
"""Every exercise `vaelab check --exercise NAME` knows.

Examples:
    >>> sorted(EXERCISES)[:3]
    ['conv', 'conv-small', 'cvae']
"""


def get_exercise(name: str) -> Exercise:
    if name not in EXERCISES:
        raise VaelabError(f"unknown exercise {name!r}; choose one of: {', '.join(EXERCISES)}")
    return EXERCISES[name]
