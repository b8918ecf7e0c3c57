"""`vaelab evaluate RUN`: how good a trained model is, and what its latent space holds.

    RUN/eval.json                        every number below, with the settings that produced it
    RUN/figures/eval_confusion.png       latent classifiers (k-NN, logistic regression): test confusion
    RUN/figures/eval_cvae_confusion.png  a CVAE as a classifier (Bayes rule): test confusion
    RUN/figures/eval_label_swap.png      a CVAE's label swap: test image, then its z under every label

All scores are in nats per image on the test split (a seeded random subset for the costly
importance-weighted bound and CVAE classifier, when --iw-images asks for one):
- the ELBO and its terms with z = the encoder mean (a plug-in value, not a bound) and with z
  sampled once per image;
- the importance-weighted bound L_K (Burda et al. 2015; vaelab/bounds.py) with its Monte Carlo
  standard error, and the ELBO averaged over the same K samples, so that L_K >= ELBO is visible;
- KL per latent dimension and the active units (Burda et al. 2015, sec. 5.2: dimension u is active
  when Cov_x(E_q(u|x)[u]) > 0.01);
- k-NN and logistic-regression accuracy on the encoder means, trained on the training split;
- for a conditional model, classification by the label with the highest bound;
- sample quality from a small classifier (vaelab/quality.py).

On grey pixels the Bernoulli likelihood is not a normalised density (Loaiza-Ganem & Cunningham
2019, "The continuous Bernoulli"), so L_K there ranks models but is not a log-likelihood to set
beside published binarised-MNIST numbers; --binarize static scores the fixed binarised test set.
"""
import argparse
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from vaelab import bounds
from vaelab.config import DEVICES, add_fields, from_args
from vaelab.errors import VaelabError
from vaelab.losses import kl_standard_normal, reconstruction_nll
from vaelab.train import to_float

ACTIVE_THRESHOLD = 0.01  # Burda et al. 2015, sec. 5.2


def _opt(default, help, **extra):
    return field(default=default, metadata={"help": help, **extra})


@dataclass(frozen=True)
class EvalConfig:
    iw_samples: int = _opt(1000, "importance samples K per image for the bound L_K (Burda et al. 2015)", min=1)
    iw_images: int | None = _opt(None, "score L_K and the CVAE classifier on this many test images, a seeded random subset; None: all (cost: K x images decoder passes)", min=1)
    binarize: str | None = _opt(None, "score binarised test pixels: dynamic (one draw from --seed), static (the fixed draw) or none (grey); None: the run's training setting", choices=bounds.BINARIZE_MODES)
    seed: int = _opt(0, "seed of the z samples, the image subset and dynamic binarisation")
    batch_size: int = _opt(100, "test images scored together", min=1)
    decode_batch: int = _opt(2000, "most decoder inputs (images x samples) in one pass; lower it if memory runs out", min=1)
    knn: int = _opt(5, "neighbours of the k-NN latent classifier", min=1)
    classify_samples: int = _opt(10, "importance samples per label when a CVAE classifies (1: a single-sample ELBO)", min=1)
    quality_samples: int = _opt(10_000, "generated images scored by the sample-quality classifier; 0 skips it", min=0)
    classifier_epochs: int | None = _opt(None, "epochs of the sample-quality classifier when first trained for a data set; None: 3 on a full set, up to 15 on a small one", min=1)
    device: str = _opt("auto", "where to evaluate; auto picks CUDA when present", choices=DEVICES)


# ---- the test set through the model --------------------------------------------------------------

@torch.no_grad()
def encode_set(model, x_uint8, y, batch_size: int = 1000):
    """(mu, logvar) [N, D] on the CPU, from images uint8 [N, C, H, W] (labels y used by CVAEs)."""
    device = next(model.parameters()).device
    parts = [model.encode(to_float(x_uint8[i:i + batch_size].to(device)), _labels(model, y, i, batch_size, device))
             for i in range(0, len(x_uint8), batch_size)]
    return torch.cat([p[0] for p in parts]).cpu(), torch.cat([p[1] for p in parts]).cpu()


def _labels(model, y, start: int, size: int, device):
    return y[start:start + size].to(device) if model.config.num_classes else None


@torch.no_grad()
def elbo_terms(model, x_uint8, y, mu, logvar, lik: dict, generator, batch_size: int = 500) -> dict:
    """Per-image -log p(x|z) with z = mu and with one sampled z, and the analytic KL; [N] each."""
    device = next(model.parameters()).device
    recon_mean, recon_sampled = [], []
    for i in range(0, len(x_uint8), batch_size):
        x, yb = to_float(x_uint8[i:i + batch_size].to(device)), _labels(model, y, i, batch_size, device)
        q = bounds.DiagonalGaussian(mu[i:i + batch_size].to(device), logvar[i:i + batch_size].to(device))
        recon_mean.append(reconstruction_nll(model.decode(q.mu, yb), x, **lik).cpu())
        recon_sampled.append(reconstruction_nll(model.decode(q.sample(1, generator)[0], yb), x, **lik).cpu())
    return {"recon_mean": torch.cat(recon_mean), "recon_sampled": torch.cat(recon_sampled),
            "kl": kl_standard_normal(mu, logvar)}


def iw_scores(model, x_uint8, y, cfg: EvalConfig, lik: dict, generator, progress: bool = False) -> dict:
    """Per-image L_K, its Monte Carlo variance, the ELBO and -log p(x|z) over the same K samples."""
    device = next(model.parameters()).device
    batch = max(1, min(cfg.batch_size, cfg.decode_batch))
    keys = ("bound", "variance", "elbo", "recon", "ess")
    out = {k: [] for k in keys}
    for i in tqdm(range(0, len(x_uint8), batch), desc=f"L_{cfg.iw_samples}", disable=not progress):
        x = to_float(x_uint8[i:i + batch].to(device))
        log_w, log_px = bounds.vae_log_weights(model, x, _labels(model, y, i, batch, device), cfg.iw_samples,
                                               lik, generator, cfg.decode_batch)
        log_w = log_w.double()  # logsumexp over thousands of weights: keep the tail
        values = (bounds.iw_bound(log_w), bounds.iw_variance(log_w), bounds.elbo(log_w),
                  -log_px.double().mean(0), bounds.effective_sample_size(log_w))
        for k, v in zip(keys, values):
            out[k].append(v.cpu())
    return {k: torch.cat(v) for k, v in out.items()}


# ---- latent statistics and classifiers -----------------------------------------------------------

def latent_stats(mu: torch.Tensor, logvar: torch.Tensor) -> dict:
    """KL per dimension (mean over images) and active units (Burda et al. 2015, sec. 5.2)."""
    kl_dims = -0.5 * (1 + logvar - mu.pow(2) - logvar.exp())  # [N, D]; sums to kl_standard_normal
    variance = mu.double().var(0)
    return {"latent_dim": mu.shape[1], "kl_per_dim": kl_dims.mean(0).tolist(),
            "mean_variance": variance.tolist(), "active_threshold": ACTIVE_THRESHOLD,
            "active_units": int((variance > ACTIVE_THRESHOLD).sum())}


def latent_classifiers(train_z, train_y, test_z, test_y, k: int = 5) -> dict:
    """k-NN and logistic regression fitted on training codes, scored on test codes."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import confusion_matrix
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    models = {"knn": KNeighborsClassifier(n_neighbors=k),
              "logistic": make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))}
    labels = np.arange(int(max(train_y.max(), test_y.max())) + 1)
    out = {}
    for name, clf in models.items():
        predicted = clf.fit(train_z, train_y).predict(test_z)
        out[name] = {"accuracy": float((predicted == test_y).mean()),
                     "confusion": confusion_matrix(test_y, predicted, labels=labels).tolist()}
    out["knn"]["k"] = k
    return out


# ---- a CVAE as a classifier, and its label swap --------------------------------------------------

@torch.no_grad()
def label_scores(model, x, num_samples: int, lik: dict, generator, decode_batch: int):
    """(L_K, ELBO) [num_classes, B]: log p(x|c) bounded for every label c."""
    iw, el = [], []
    for c in range(model.config.num_classes):
        y = torch.full((len(x),), c, dtype=torch.int64, device=x.device)
        log_w, _ = bounds.vae_log_weights(model, x, y, num_samples, lik, generator, decode_batch)
        iw.append(bounds.iw_bound(log_w))
        el.append(bounds.elbo(log_w))
    return torch.stack(iw), torch.stack(el)


def cvae_classifier(model, x_uint8, y, cfg: EvalConfig, lik: dict, generator) -> dict:
    """Bayes rule with a uniform prior over labels: argmax_c p(c|x) = argmax_c log p(x|c)."""
    from sklearn.metrics import confusion_matrix
    device = next(model.parameters()).device
    batch = max(1, min(cfg.batch_size, cfg.decode_batch))
    iw, el = zip(*(label_scores(model, to_float(x_uint8[i:i + batch].to(device)), cfg.classify_samples,
                                lik, generator, cfg.decode_batch) for i in range(0, len(x_uint8), batch)))
    truth, labels = y.numpy(), np.arange(model.config.num_classes)
    out = {"samples_per_label": cfg.classify_samples, "images": len(truth)}
    for name, scores in (("iw", torch.cat(iw, 1)), ("elbo", torch.cat(el, 1))):
        predicted = scores.argmax(0).cpu().numpy()
        out[name] = {"accuracy": float((predicted == truth).mean()),
                     "confusion": confusion_matrix(truth, predicted, labels=labels).tolist()}
    return out


@torch.no_grad()
def label_swap(model, x_uint8, y) -> torch.Tensor:
    """[K*(K+1), C, H, W] images, row by row: the first test image of each class, then its encoder
    mean (encoded with its own label) decoded under labels 0..K-1."""
    k = model.config.num_classes
    device = next(model.parameters()).device
    picks = [int(torch.nonzero(y == c)[0]) for c in range(k) if (y == c).any()]
    x, own = to_float(x_uint8[picks].to(device)), y[picks].to(device)
    mu, _ = model.encode(x, own)
    swapped = [torch.sigmoid(model.decode(mu, torch.full_like(own, c))) for c in range(k)]
    return torch.stack([x, *swapped], 1).flatten(0, 1).cpu()  # [rows, K+1, ...] -> rows of K+1


def confusion_figure(matrices: dict, classes):
    """One panel per classifier: counts, each row (true class) shaded by its share."""
    from matplotlib.figure import Figure
    fig = Figure(figsize=(4.6 * len(matrices), 4.4), dpi=100, layout="constrained")
    for i, (title, matrix) in enumerate(matrices.items()):
        m = np.asarray(matrix)
        ax = fig.add_subplot(1, len(matrices), i + 1)
        share = m / np.maximum(m.sum(1, keepdims=True), 1)
        ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
        for (r, c), count in np.ndenumerate(m):
            ax.text(c, r, str(count), ha="center", va="center", fontsize=6, color="white" if share[r, c] > 0.5 else "black")
        ax.set_xticks(range(len(classes)), classes, rotation=90, fontsize=7)
        ax.set_yticks(range(len(classes)), classes, fontsize=7)
        ax.set(title=title, xlabel="predicted", ylabel="true")
    return fig


# ---- the whole evaluation of a run ---------------------------------------------------------------

@dataclass
class Job:
    """What every section reads: the run's model and data, the settings and one seeded generator."""
    run_dir: Path
    model: torch.nn.Module
    config: dict
    data: object
    test_x: torch.Tensor  # uint8, binarised as asked
    mode: str
    lik: dict
    cfg: EvalConfig
    generator: torch.Generator
    figures: dict = field(default_factory=dict)  # name -> caption, for RUN/figures/<name>.png

    @property
    def conditional(self) -> bool:
        return self.model.config.num_classes > 0

    def subset(self) -> torch.Tensor:
        """Indices of the test images for the costly scores: all, or a seeded random subset."""
        n = len(self.test_x)
        if self.cfg.iw_images is None or self.cfg.iw_images >= n:
            return torch.arange(n)
        return torch.randperm(n, generator=torch.Generator().manual_seed(self.cfg.seed))[:self.cfg.iw_images].sort().values

    def save_figure(self, name: str, fig_or_array, caption: str) -> None:
        """RUN/figures/<name>.png from a matplotlib Figure, or pixel for pixel from an array."""
        path = self.run_dir / "figures" / f"{name}.png"
        path.parent.mkdir(exist_ok=True)
        if isinstance(fig_or_array, np.ndarray):
            from vaelab.images import save_png
            save_png(path, fig_or_array)
        else:
            fig_or_array.savefig(path, dpi=100, bbox_inches="tight")
        self.figures[name] = caption


def open_job(run_dir, cfg: EvalConfig) -> Job:
    from vaelab.data import load_dataset
    from vaelab.runs import load_model
    from vaelab.train import resolve_device
    model, config = load_model(run_dir, resolve_device(cfg.device))
    model = model.to(memory_format=torch.channels_last)  # layout only: 1.6-3x faster convs on this CPU
    train_cfg = config["train"]
    mode = cfg.binarize or train_cfg.get("binarize", "none")
    data = load_dataset(train_cfg["dataset"], train_cfg["data_dir"])
    if cfg.iw_images is not None and cfg.iw_images > len(data.test_x):
        raise VaelabError(f"--iw-images {cfg.iw_images} is more than the {len(data.test_x):,} test images of "
                          f"{data.name}; give at most {len(data.test_x)}, or leave it out to use them all")
    lik = {"likelihood": train_cfg["likelihood"], "std": train_cfg["gaussian_std"]}
    return Job(Path(run_dir), model, config, data, bounds.binarized_set(data.test_x, mode, "test", cfg.seed),
               mode, lik, cfg, torch.Generator().manual_seed(cfg.seed))


def elbo_section(job: Job) -> tuple[dict, dict]:
    """(ELBO terms on the whole test set, latent statistics)."""
    mu, logvar = encode_set(job.model, job.test_x, job.data.test_y)
    t = elbo_terms(job.model, job.test_x, job.data.test_y, mu, logvar, job.lik, job.generator)
    kl = t["kl"].double().mean().item()
    mean_z, sampled_z = t["recon_mean"].double().mean().item(), t["recon_sampled"].double().mean().item()
    elbo = {"images": len(mu), "kl": kl,
            "mean_z": {"recon": mean_z, "elbo": -(mean_z + kl)},
            "sampled_z": {"recon": sampled_z, "elbo": -(sampled_z + kl),
                          "se_images": bounds.summarize(t["recon_sampled"] + t["kl"])["se_images"]}}
    return elbo, latent_stats(mu, logvar)


def iw_section(job: Job, progress: bool = False) -> dict:
    """L_K on the (subset of) test images, and the ELBO over the same K samples."""
    started = time.perf_counter()
    pick = job.subset()
    s = iw_scores(job.model, job.test_x[pick], job.data.test_y[pick], job.cfg, job.lik, job.generator, progress)
    bound, elbo = bounds.summarize(s["bound"], s["variance"]), bounds.summarize(s["elbo"])
    return {"samples": job.cfg.iw_samples, "images": len(pick), "bound": bound["mean"],
            "bound_se_mc": bound["se_mc"], "bound_se_images": bound["se_images"],
            "elbo": elbo["mean"], "elbo_se_images": elbo["se_images"], "recon": s["recon"].mean().item(),
            "gap": bound["mean"] - elbo["mean"], "ess_mean": s["ess"].mean().item(),
            "seconds": time.perf_counter() - started}


def classifier_section(job: Job) -> dict:
    """k-NN and logistic regression on the encoder means, training split -> test split."""
    train_x = bounds.binarized_set(job.data.train_x, job.mode, "train", job.cfg.seed)
    train_z, _ = encode_set(job.model, train_x, job.data.train_y)
    test_z, _ = encode_set(job.model, job.test_x, job.data.test_y)
    out = latent_classifiers(train_z.numpy(), job.data.train_y.numpy(), test_z.numpy(),
                             job.data.test_y.numpy(), job.cfg.knn)
    titles = {f"{job.cfg.knn}-NN: {out['knn']['accuracy']:.1%}": out["knn"]["confusion"],
              f"logistic regression: {out['logistic']['accuracy']:.1%}": out["logistic"]["confusion"]}
    job.save_figure("eval_confusion", confusion_figure(titles, job.data.classes),
                    f"Test confusion matrices of classifiers fitted to the {len(train_z):,} training encoder "
                    f"means (latent size {train_z.shape[1]}); rows are the true classes, shading their share.")
    return {"features": "encoder means", "train_images": len(train_z), "chance": 1 / len(job.data.classes), **out}


def cvae_section(job: Job) -> dict:
    """The CVAE as a classifier, and its label-swap figure."""
    from vaelab.images import image_grid
    pick = job.subset()
    out = cvae_classifier(job.model, job.test_x[pick], job.data.test_y[pick], job.cfg, job.lik, job.generator)
    k, s = len(job.data.classes), job.cfg.classify_samples
    titles = {f"argmax L_{s}: {out['iw']['accuracy']:.1%}": out["iw"]["confusion"],
              f"argmax ELBO ({s} samples): {out['elbo']['accuracy']:.1%}": out["elbo"]["confusion"]}
    job.save_figure("eval_cvae_confusion", confusion_figure(titles, job.data.classes),
                    f"The CVAE as a classifier on {len(pick):,} test images: the label c with the highest "
                    f"bound on log p(x|c) (Bayes rule, uniform prior), by L_{s} and by the ELBO.")
    job.save_figure("eval_label_swap", image_grid(label_swap(job.model, job.test_x, job.data.test_y), ncol=k + 1),
                    f"Label swap: the first test image of each class (first column), then the same z (its encoder "
                    f"mean, encoded with its own label) decoded under labels 0 to {k - 1}: the style stays, the content changes.")
    return {"chance": 1 / k, **out}


def evaluate_run(run_dir, iw_samples: int = 1000, *, progress: bool = False, retrain_classifier: bool = False,
                 **settings) -> dict:
    """Evaluate a run folder (settings: the fields of EvalConfig); writes and returns RUN/eval.json."""
    from vaelab.runs import write_json
    started = time.perf_counter()
    job = open_job(run_dir, EvalConfig(iw_samples=iw_samples, **settings))
    result = {"run": str(job.run_dir), "model": job.config["model"], "dataset": job.data.name,
              "settings": {**asdict(job.cfg), "binarize": job.mode, **job.lik},
              "device": str(next(job.model.parameters()).device)}
    if job.mode == "none" and job.lik["likelihood"] == "bernoulli":
        result["note"] = ("grey pixels under a Bernoulli likelihood: the bounds rank models but are not "
                          "log-likelihoods comparable with binarised-MNIST results (use --binarize static)")
    result["elbo"], result["latent"] = elbo_section(job)
    result["iw"] = iw_section(job, progress)
    if job.conditional:
        result["cvae_classifier"] = cvae_section(job)
    else:
        result["latent_classifiers"] = classifier_section(job)
    if job.cfg.quality_samples:
        from vaelab.quality import sample_quality
        result["sample_quality"] = sample_quality(job.model, job.data, job.cfg.quality_samples, job.cfg.seed,
                                                  job.cfg.classifier_epochs, retrain_classifier)
    result.update(figures=job.figures, seconds=time.perf_counter() - started,
                  created=datetime.now().isoformat(timespec="seconds"))
    write_json(job.run_dir / "eval.json", result)
    return result


# ---- the command ---------------------------------------------------------------------------------

def format_result(r: dict) -> str:
    """The terminal summary of eval.json."""
    e, iw, lat = r["elbo"], r["iw"], r["latent"]
    lines = [f"{r['model']} on {r['dataset']} ({r['settings']['binarize']} binarisation), nats per image:",
             f"  ELBO, z = mean     {e['mean_z']['elbo']:9.2f}  (recon {e['mean_z']['recon']:.2f}, KL {e['kl']:.2f}; {e['images']:,} images)",
             f"  ELBO, z sampled    {e['sampled_z']['elbo']:9.2f}  (recon {e['sampled_z']['recon']:.2f})",
             f"  L_{iw['samples']:<16}{iw['bound']:9.2f}  ± {iw['bound_se_mc']:.2f} (Monte Carlo), ± {iw['bound_se_images']:.2f} (images); "
             f"ELBO on the same samples {iw['elbo']:.2f}; {iw['images']:,} images",
             f"  active units       {lat['active_units']} of {lat['latent_dim']}"]
    if "latent_classifiers" in r:
        c = r["latent_classifiers"]
        lines.append(f"  latent classifiers {c['knn']['k']}-NN {c['knn']['accuracy']:.1%}, logistic {c['logistic']['accuracy']:.1%} (chance {c['chance']:.0%})")
    if "cvae_classifier" in r:
        c = r["cvae_classifier"]
        lines.append(f"  CVAE classifier    {c['iw']['accuracy']:.1%} by L_{c['samples_per_label']}, {c['elbo']['accuracy']:.1%} by the ELBO")
    if "sample_quality" in r:
        q = r["sample_quality"]
        lines.append(f"  samples            classifier-feature Fréchet distance {q['frechet_distance']:.2f} (train vs test {q['frechet_train_vs_test']:.2f}), "
                     f"confidence {q['mean_confidence']:.1%}, balance {q['balance']:.3f} (classifier test accuracy {q['classifier']['test_accuracy']:.1%})")
    return "\n".join(lines)


def add_evaluate_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser("evaluate", help="score a run: ELBO, importance-weighted bound, latent classifiers, sample quality; writes RUN/eval.json")
    p.add_argument("run", help="run folder")
    add_fields(p, EvalConfig)
    p.add_argument("--retrain-classifier", action="store_true", help="train the sample-quality classifier again even if one is cached")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(handler=cmd_evaluate)
    return p


def cmd_evaluate(args) -> None:
    cfg = from_args(EvalConfig, args)
    result = evaluate_run(args.run, progress=not args.no_progress, retrain_classifier=args.retrain_classifier,
                          **{k: v for k, v in asdict(cfg).items()})
    print(format_result(result))
    print(f"wrote {Path(args.run) / 'eval.json'}")
