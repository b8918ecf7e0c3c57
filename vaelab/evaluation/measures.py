"""What a trained model makes of the test set: the ELBO and its terms, the importance-weighted
bound, latent statistics and classifiers on the codes, and a CVAE used as a classifier. Functions of
a model and tensors; scoring.py runs them on a run and writes what they find.
"""

import numpy as np
import torch

from vaelab import losses
from vaelab.data.pixels import to_float
from vaelab.device import device_of
from vaelab.evaluation.settings import EvalConfig
from vaelab.losses import kl_per_dimension, kl_standard_normal, reconstruction_nll
from vaelab.progress import bar as progress_bar

ACTIVE_THRESHOLD = 0.01  # Burda et al. 2015, sec. 5.2


# ---- the test set through the model --------------------------------------------------------------


def _labels(model, y, start: int, size: int, device):
    return y[start : start + size].to(device) if model.config.num_classes else None


@torch.no_grad()
def elbo_terms(model, x_uint8, y, mu, logvar, lik: dict, generator, batch_size: int = 500) -> dict:
    """Per-image -log p(x|z) with z = mu and with one sampled z, and the analytic KL; [N] each."""
    device = device_of(model)
    recon_mean, recon_sampled = [], []
    for i in range(0, len(x_uint8), batch_size):
        x, yb = to_float(x_uint8[i : i + batch_size].to(device)), _labels(model, y, i, batch_size, device)
        q = losses.DiagonalGaussian(mu[i : i + batch_size].to(device), logvar[i : i + batch_size].to(device))
        recon_mean.append(reconstruction_nll(model.decode(q.mu, yb), x, **lik).cpu())
        recon_sampled.append(reconstruction_nll(model.decode(q.sample(1, generator)[0], yb), x, **lik).cpu())
    return {
        "recon_mean": torch.cat(recon_mean),
        "recon_sampled": torch.cat(recon_sampled),
        "kl": kl_standard_normal(mu, logvar),
    }


def iw_scores(model, x_uint8, y, cfg: EvalConfig, lik: dict, generator, progress: bool = False) -> dict:
    """Per-image L_K, its Monte Carlo variance, the ELBO and -log p(x|z) over the same K samples."""
    device = device_of(model)
    batch = max(1, min(cfg.batch_size, cfg.decode_batch))
    keys = ("bound", "variance", "elbo", "recon", "ess")
    out = {k: [] for k in keys}
    bar = progress_bar(len(x_uint8), desc=f"L_{cfg.iw_samples}", show=progress)
    for i in range(0, len(x_uint8), batch):
        x = to_float(x_uint8[i : i + batch].to(device))
        log_w, log_px = losses.vae_log_weights(
            model, x, _labels(model, y, i, batch, device), cfg.iw_samples, lik, generator, cfg.decode_batch
        )
        log_w = log_w.double()  # logsumexp over thousands of weights: keep the tail
        values = (
            losses.iw_bound(log_w),
            losses.iw_variance(log_w),
            losses.elbo(log_w),
            -log_px.double().mean(0),
            losses.effective_sample_size(log_w),
        )
        for k, v in zip(keys, values, strict=True):
            out[k].append(v.cpu())
        bar.update(len(x))
    bar.close()
    return {k: torch.cat(v) for k, v in out.items()}


# ---- latent statistics and classifiers -----------------------------------------------------------


def latent_stats(mu: torch.Tensor, logvar: torch.Tensor) -> dict:
    """KL per dimension (mean over images) and active units (Burda et al. 2015, sec. 5.2)."""
    kl_dims = kl_per_dimension(mu, logvar)  # [N, D]
    variance = mu.double().var(0)
    return {
        "latent_dim": mu.shape[1],
        "kl_per_dim": kl_dims.mean(0).tolist(),
        "mean_variance": variance.tolist(),
        "active_threshold": ACTIVE_THRESHOLD,
        "active_units": int((variance > ACTIVE_THRESHOLD).sum()),
    }


def latent_classifiers(train_z, train_y, test_z, test_y, k: int = 5) -> dict:
    """k-NN and logistic regression fitted on training codes, scored on test codes."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import confusion_matrix
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    models = {
        "knn": KNeighborsClassifier(n_neighbors=k),
        "logistic": make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000)),
    }
    labels = np.arange(int(max(train_y.max(), test_y.max())) + 1)
    out = {}
    for name, clf in models.items():
        predicted = clf.fit(train_z, train_y).predict(test_z)
        out[name] = {
            "accuracy": float((predicted == test_y).mean()),
            "confusion": confusion_matrix(test_y, predicted, labels=labels).tolist(),
        }
    out["knn"]["k"] = k
    return out


# ---- a CVAE as a classifier, and its label swap --------------------------------------------------


@torch.no_grad()
def label_scores(model, x, num_samples: int, lik: dict, generator, decode_batch: int):
    """(L_K, ELBO) [num_classes, B]: log p(x|c) bounded for every label c."""
    iw, el = [], []
    for c in range(model.config.num_classes):
        y = torch.full((len(x),), c, dtype=torch.int64, device=x.device)
        log_w, _ = losses.vae_log_weights(model, x, y, num_samples, lik, generator, decode_batch)
        iw.append(losses.iw_bound(log_w))
        el.append(losses.elbo(log_w))
    return torch.stack(iw), torch.stack(el)


def cvae_classifier(model, x_uint8, y, cfg: EvalConfig, lik: dict, generator) -> dict:
    """Bayes rule with a uniform prior over labels: argmax_c p(c|x) = argmax_c log p(x|c)."""
    from sklearn.metrics import confusion_matrix

    device = device_of(model)
    batch = max(1, min(cfg.batch_size, cfg.decode_batch))
    parts = [
        label_scores(
            model, to_float(x_uint8[i : i + batch].to(device)), cfg.classify_samples, lik, generator, cfg.decode_batch
        )
        for i in range(0, len(x_uint8), batch)
    ]
    iw, el = (torch.cat([part[k] for part in parts], 1) for k in (0, 1))
    truth, labels = y.numpy(), np.arange(model.config.num_classes)
    out = {"samples_per_label": cfg.classify_samples, "images": len(truth)}
    for name, scores in (("iw", iw), ("elbo", el)):
        predicted = scores.argmax(0).cpu().numpy()
        out[name] = {
            "accuracy": float((predicted == truth).mean()),
            "confusion": confusion_matrix(truth, predicted, labels=labels).tolist(),
        }
    return out
