"""Images from the prior: z ~ N(0, I) through the decoder."""
import torch

from vaelab.errors import VaelabError


@torch.no_grad()
def sample_images(model, n: int, label: int | None = None, seed: int = 0) -> torch.Tensor:
    """n images [n, C, H, W] in [0, 1] (Bernoulli means). A conditional model uses `label`,
    or the labels 0, 1, 2, ... in turn when none is given."""
    c = model.config
    if label is not None and not c.num_classes:
        raise VaelabError("--label needs a conditional model (cvae or cvae-mlp); this run's model is not conditional")
    if label is not None and not 0 <= label < c.num_classes:
        raise VaelabError(f"--label must be a class index in 0..{c.num_classes - 1}, got {label}")
    generator = torch.Generator().manual_seed(seed)
    device = next(model.parameters()).device
    z = torch.randn(n, c.latent_dim, generator=generator).to(device)
    y = None
    if c.num_classes:
        y = torch.full((n,), label) if label is not None else torch.arange(n) % c.num_classes
        y = y.to(device)
    return torch.sigmoid(model.decode(z, y))
