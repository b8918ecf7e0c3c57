"""The short training of a check: a student's model with the student's loss, for a few epochs on the
bundled sample, then scored by vaelab's own scorer so that every submission is measured alike.

The loop is the one a course notebook writes (Adam, shuffled batches, loss = reconstruction + KL
through `reparameterize`), with a fixed seed, so the reference band (bench/bands.py) is measured by
this same loop on vaelab's architectures with PyTorch's default initialisation, as a student builds
them. The score does not trust the student's loss: test -ELBO = binary cross-entropy summed over the
pixels + the analytic KL (Kingma & Welling 2014, appendix B), z drawn with fixed noise.
"""

import math
import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from vaelab.losses import kl_standard_normal

SCORE_SEED = 20_240_601  # the scorer's noise, apart from every training seed
ACTIVE_THRESHOLD = 0.01  # Var_x E_q[z_k] above this: an active unit (Burda et al. 2015, sec. 5.2)
KNN = 5


@dataclass(frozen=True)
class ShortTraining:
    """The settings of a check's training (and of the reference band it must land in).

    Examples:
        >>> ShortTraining().epochs
        2
    """

    dataset: str = "mnist-sample"
    epochs: int = 2
    batch_size: int = 32
    lr: float = 1e-3
    seed: int = 0

    @property
    def key(self) -> str:
        return f"{self.dataset}/epochs={self.epochs}/batch={self.batch_size}"


def train_and_score(
    make_model, pieces: dict, settings: ShortTraining, data, time_limit: float = math.inf, pictures: bool = False
) -> dict:
    """Build the model under the seed, train it with `pieces` (reparameterize, kl_divergence,
    reconstruction_loss), score it on the test split. `make_model()` returns an object with
    encode(x, y), decode(z, y) -> the decoder's own output, parameters(), and bce(output, x)."""
    torch.manual_seed(settings.seed)
    model = make_model()
    optimizer = torch.optim.Adam(model.parameters(), lr=settings.lr)
    generator = torch.Generator().manual_seed(settings.seed)
    x_all, y_all = data.train_x, data.train_y
    start, losses = time.perf_counter(), []
    for _ in range(settings.epochs):
        for idx in torch.randperm(len(x_all), generator=generator).split(settings.batch_size):
            x, y = x_all[idx].float() / 255, y_all[idx]
            mu, logvar = model.encode(x, y)
            z = pieces["reparameterize"](mu, logvar)
            out = model.decode(z, y)
            target = x.reshape(out.shape) if out.numel() == x.numel() else x
            loss = _batch_mean(pieces["reconstruction_loss"](target, out)) + _batch_mean(
                pieces["kl_divergence"](mu, logvar)
            )
            if not torch.isfinite(loss):
                return {"diverged": True, "loss": loss.item(), "steps": len(losses)}
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
            if time.perf_counter() - start > time_limit:
                return {"timed_out": True, "seconds": time.perf_counter() - start, "steps": len(losses)}
    result = {**score(model, data), "seconds": time.perf_counter() - start, "final_train_loss": losses[-1]}
    return result | ({"pictures": latent_pictures(model, data)} if pictures else {})


def _batch_mean(value) -> torch.Tensor:
    return value.mean() if isinstance(value, torch.Tensor) and value.dim() else value


@torch.no_grad()
def score(model, data, batch_size: int = 500) -> dict:
    """Test -ELBO, reconstruction and KL (nats per image), k-NN accuracy on the encoder means
    (train -> test) and active units."""
    generator = torch.Generator().manual_seed(SCORE_SEED)
    recon, kl, mu_test, logvar_test = [], [], [], []
    for x, y in zip(data.test_x.split(batch_size), data.test_y.split(batch_size), strict=True):
        x = x.float() / 255
        mu, logvar = model.encode(x, y)
        eps = torch.randn(mu.shape, generator=generator)
        recon.append(model.bce(model.decode(mu + eps * torch.exp(0.5 * logvar), y), x))
        kl.append(kl_standard_normal(mu, logvar))
        mu_test.append(mu)
        logvar_test.append(logvar)
    mu_train = torch.cat([model.encode(x.float() / 255, y)[0] for x, y in _batches(data.train_x, data.train_y)])
    recon, kl, mu_test = torch.cat(recon), torch.cat(kl), torch.cat(mu_test)
    return {
        "neg_elbo": float((recon + kl).mean()),
        "recon": float(recon.mean()),
        "kl": float(kl.mean()),
        "knn_accuracy": knn_accuracy(mu_train, data.train_y, mu_test, data.test_y),
        "active_units": int((mu_test.double().var(0) > ACTIVE_THRESHOLD).sum()),
    }


@torch.no_grad()
def latent_pictures(model, data, grid: int = 11, scale: float = 3.0, label: int = 4) -> dict:
    """What the scatter and the manifold are drawn from: the test encoder means [N, 2] with their
    labels, and the images decoded from a grid x grid of z over ±scale (a conditional model with
    `label`), tiled with the largest second coordinate at the top, as the report's grids are."""
    mu = torch.cat([model.encode(x.float() / 255, y)[0] for x, y in _batches(data.test_x, data.test_y)])
    values = torch.linspace(-scale, scale, grid)
    z = torch.stack([values.repeat(grid), values.flip(0).repeat_interleave(grid)], 1)  # row-major, top row first
    images = model.image(model.decode(z, torch.full((grid * grid,), label))).reshape(grid, grid, 28, 28)
    tiles = images.permute(0, 2, 1, 3).reshape(grid * 28, grid * 28)
    return {"mu": mu[:, :2].numpy(), "labels": data.test_y.numpy(), "tiles": tiles.numpy(), "values": values.numpy()}


def _batches(x, y, size: int = 500):
    return zip(x.split(size), y.split(size), strict=True)


def knn_accuracy(train_z, train_y, test_z, test_y, k: int = KNN) -> float:
    """Accuracy of a k-nearest-neighbour vote (Euclidean, ties to the smaller label) on the codes."""
    nearest = torch.cdist(test_z.double(), train_z.double()).topk(k, largest=False).indices  # [N, k]
    votes = F.one_hot(train_y[nearest], int(train_y.max()) + 1).sum(1)  # [N, classes]
    return float((votes.argmax(1) == test_y).double().mean())


def bce_logits(logits: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Per image: binary cross-entropy from logits summed over the pixels."""
    return F.binary_cross_entropy_with_logits(logits.reshape(x.shape), x, reduction="none").flatten(1).sum(1)


def bce_probabilities(p: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Per image: binary cross-entropy from probabilities (a decoder that ends in a sigmoid)."""
    return F.binary_cross_entropy(p.reshape(x.shape), x, reduction="none").flatten(1).sum(1)


class ReferenceModel:
    """One of vaelab's models as a check trains it: built from vaelab's table, then given PyTorch's
    default initialisation, as a student's own layers get."""

    def __init__(self, name: str):
        from vaelab.models import build_model, make_config

        self.model = build_model(name, make_config(name, (1, 28, 28), 10))
        for layer in self.model.modules():
            if hasattr(layer, "reset_parameters"):
                layer.reset_parameters()
        self.conditional = bool(self.model.config.num_classes)

    def encode(self, x, y):
        return self.model.encode(x, y if self.conditional else None)

    def decode(self, z, y):
        return self.model.decode(z, y if self.conditional else None)

    def parameters(self):
        return self.model.parameters()

    def bce(self, logits, x):
        return bce_logits(logits, x)

    def image(self, logits):
        return torch.sigmoid(logits)
