"""`vaelab evaluate RUN`: how good a trained model is, and what its latent space holds.

    RUN/eval.json                        every number below, with the settings that produced it
    RUN/figures/eval_confusion.png       latent classifiers (k-NN, logistic regression): test confusion
    RUN/figures/eval_cvae_confusion.png  a CVAE as a classifier (Bayes rule): test confusion

All scores are in nats per image on the test split (a seeded random subset for the costly
importance-weighted bound and CVAE classifier, when --iw-images asks for one):
- the ELBO and its terms with z = the encoder mean (a plug-in value, not a bound) and with z
  sampled once per image;
- the importance-weighted bound L_K (Burda et al. 2015; vaelab/losses.py) with its Monte Carlo
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
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime

import numpy as np
import torch

from vaelab import latent, losses, runs
from vaelab.device import DEVICES, device_of, resolve_device
from vaelab.errors import VaelabError
from vaelab.losses import kl_per_dimension, kl_standard_normal, reconstruction_nll
from vaelab.options import MAX_SEED, check, opt
from vaelab.pixels import BINARIZE_MODES, binarized_set, to_float
from vaelab.progress import bar as progress_bar

ACTIVE_THRESHOLD = 0.01  # Burda et al. 2015, sec. 5.2


@dataclass(frozen=True)
class EvalConfig:
    iw_samples: int = opt(1000, "importance samples K per image for the bound L_K (Burda et al. 2015)", min=1, cap=100_000)
    iw_images: int | None = opt(None, "score L_K and the CVAE classifier on this many test images, a seeded random subset; None: all (cost: K x images decoder passes)", min=1)
    binarize: str | None = opt(None, "score binarised test pixels: dynamic (one draw from --seed), static (the fixed draw) or none (grey); None: the run's training setting", choices=BINARIZE_MODES)
    seed: int = opt(0, "seed of the z samples, the image subset and dynamic binarisation", min=0, max=MAX_SEED)
    batch_size: int = opt(100, "test images scored together", min=1)
    decode_batch: int = opt(2000, "most decoder inputs (images x samples) in one pass; lower it if memory runs out", min=1)
    knn: int = opt(5, "neighbours of the k-NN latent classifier", min=1)
    classify_samples: int = opt(10, "importance samples per label when a CVAE classifies (1: a single-sample ELBO)", min=1)
    quality_samples: int = opt(10_000, "generated images scored by the sample-quality classifier; 0 skips it", min=0, cap=100_000)
    classifier_epochs: int | None = opt(None, "epochs of the sample-quality classifier when first trained for a data set; None: 3 on a full set, up to 15 on a small one", min=1)
    device: str = opt("auto", "where to evaluate; auto picks CUDA when present", choices=DEVICES)

    def __post_init__(self):
        check(self)


# ---- the test set through the model --------------------------------------------------------------

def _labels(model, y, start: int, size: int, device):
    return y[start:start + size].to(device) if model.config.num_classes else None


@torch.no_grad()
def elbo_terms(model, x_uint8, y, mu, logvar, lik: dict, generator, batch_size: int = 500) -> dict:
    """Per-image -log p(x|z) with z = mu and with one sampled z, and the analytic KL; [N] each."""
    device = device_of(model)
    recon_mean, recon_sampled = [], []
    for i in range(0, len(x_uint8), batch_size):
        x, yb = to_float(x_uint8[i:i + batch_size].to(device)), _labels(model, y, i, batch_size, device)
        q = losses.DiagonalGaussian(mu[i:i + batch_size].to(device), logvar[i:i + batch_size].to(device))
        recon_mean.append(reconstruction_nll(model.decode(q.mu, yb), x, **lik).cpu())
        recon_sampled.append(reconstruction_nll(model.decode(q.sample(1, generator)[0], yb), x, **lik).cpu())
    return {"recon_mean": torch.cat(recon_mean), "recon_sampled": torch.cat(recon_sampled),
            "kl": kl_standard_normal(mu, logvar)}


def iw_scores(model, x_uint8, y, cfg: EvalConfig, lik: dict, generator, progress: bool = False) -> dict:
    """Per-image L_K, its Monte Carlo variance, the ELBO and -log p(x|z) over the same K samples."""
    device = device_of(model)
    batch = max(1, min(cfg.batch_size, cfg.decode_batch))
    keys = ("bound", "variance", "elbo", "recon", "ess")
    out = {k: [] for k in keys}
    bar = progress_bar(len(x_uint8), desc=f"L_{cfg.iw_samples}", show=progress)
    for i in range(0, len(x_uint8), batch):
        x = to_float(x_uint8[i:i + batch].to(device))
        log_w, log_px = losses.vae_log_weights(model, x, _labels(model, y, i, batch, device), cfg.iw_samples,
                                               lik, generator, cfg.decode_batch)
        log_w = log_w.double()  # logsumexp over thousands of weights: keep the tail
        values = (losses.iw_bound(log_w), losses.iw_variance(log_w), losses.elbo(log_w),
                  -log_px.double().mean(0), losses.effective_sample_size(log_w))
        for k, v in zip(keys, values):
            out[k].append(v.cpu())
        bar.update(len(x))
    bar.close()
    return {k: torch.cat(v) for k, v in out.items()}


# ---- latent statistics and classifiers -----------------------------------------------------------

def latent_stats(mu: torch.Tensor, logvar: torch.Tensor) -> dict:
    """KL per dimension (mean over images) and active units (Burda et al. 2015, sec. 5.2)."""
    kl_dims = kl_per_dimension(mu, logvar)  # [N, D]
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
        log_w, _ = losses.vae_log_weights(model, x, y, num_samples, lik, generator, decode_batch)
        iw.append(losses.iw_bound(log_w))
        el.append(losses.elbo(log_w))
    return torch.stack(iw), torch.stack(el)


def cvae_classifier(model, x_uint8, y, cfg: EvalConfig, lik: dict, generator) -> dict:
    """Bayes rule with a uniform prior over labels: argmax_c p(c|x) = argmax_c log p(x|c)."""
    from sklearn.metrics import confusion_matrix
    device = device_of(model)
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


# ---- the whole evaluation of a run ---------------------------------------------------------------

@dataclass
class Job:
    """What every section reads: the run, its test images as scored, the settings and one seeded
    generator; and the figures written so far."""
    run: runs.Run
    test_x: torch.Tensor  # uint8, binarised as asked
    mode: str
    lik: dict
    cfg: EvalConfig
    generator: torch.Generator
    figures: dict = field(default_factory=dict)  # name -> caption, for RUN/figures/<name>.png

    @property
    def model(self) -> torch.nn.Module:
        return self.run.model

    @property
    def data(self):
        return self.run.data

    @property
    def conditional(self) -> bool:
        return self.run.conditional

    def subset(self) -> torch.Tensor:
        """Indices of the test images for the costly scores: all, or a seeded random subset."""
        n = len(self.test_x)
        if self.cfg.iw_images is None or self.cfg.iw_images >= n:
            return torch.arange(n)
        return torch.randperm(n, generator=torch.Generator().manual_seed(self.cfg.seed))[:self.cfg.iw_images].sort().values

    def save_figure(self, name: str, fig_or_array, caption: str) -> None:
        runs.save_figure(self.run.dir, name, fig_or_array)
        self.figures[name] = caption


def open_job(run_dir, cfg: EvalConfig) -> Job:
    run = runs.open_run(run_dir, resolve_device(cfg.device))
    run.model.to(memory_format=torch.channels_last)  # layout only: 1.6-3x faster convs on this CPU
    train_cfg = run.config["train"]
    mode = cfg.binarize or train_cfg.get("binarize", "none")
    if cfg.iw_images is not None and cfg.iw_images > len(run.data.test_x):
        raise VaelabError(f"--iw-images {cfg.iw_images} is more than the {len(run.data.test_x):,} test images of "
                          f"{run.data.name}; give at most {len(run.data.test_x)}, or leave it out to use them all")
    lik = {"likelihood": train_cfg["likelihood"], "std": train_cfg["gaussian_std"]}
    return Job(run, binarized_set(run.data.test_x, mode, "test", cfg.seed), mode, lik, cfg,
               torch.Generator().manual_seed(cfg.seed))


def encode_set(model, x_uint8, y) -> tuple[torch.Tensor, torch.Tensor]:
    """(mu, logvar) [N, D] as CPU tensors (vaelab.latent.encode_set)."""
    mu, logvar = latent.encode_set(model, x_uint8, y)
    return torch.from_numpy(mu), torch.from_numpy(logvar)


def elbo_section(job: Job) -> tuple[dict, dict]:
    """(ELBO terms on the whole test set, latent statistics)."""
    mu, logvar = encode_set(job.model, job.test_x, job.data.test_y)
    t = elbo_terms(job.model, job.test_x, job.data.test_y, mu, logvar, job.lik, job.generator)
    kl = t["kl"].double().mean().item()
    mean_z, sampled_z = t["recon_mean"].double().mean().item(), t["recon_sampled"].double().mean().item()
    elbo = {"images": len(mu), "kl": kl,
            "mean_z": {"recon": mean_z, "elbo": -(mean_z + kl)},
            "sampled_z": {"recon": sampled_z, "elbo": -(sampled_z + kl),
                          "se_images": losses.summarize(t["recon_sampled"] + t["kl"])["se_images"]}}
    return elbo, latent_stats(mu, logvar)


def iw_section(job: Job, progress: bool = False) -> dict:
    """L_K on the (subset of) test images, and the ELBO over the same K samples."""
    started = time.perf_counter()
    pick = job.subset()
    s = iw_scores(job.model, job.test_x[pick], job.data.test_y[pick], job.cfg, job.lik, job.generator, progress)
    bound, elbo = losses.summarize(s["bound"], s["variance"]), losses.summarize(s["elbo"])
    return {"samples": job.cfg.iw_samples, "images": len(pick), "bound": bound["mean"],
            "bound_se_mc": bound["se_mc"], "bound_se_images": bound["se_images"],
            "elbo": elbo["mean"], "elbo_se_images": elbo["se_images"], "recon": s["recon"].mean().item(),
            "gap": bound["mean"] - elbo["mean"], "ess_mean": s["ess"].mean().item(),
            "seconds": time.perf_counter() - started}


def classifier_section(job: Job) -> dict:
    """k-NN and logistic regression on the encoder means, training split -> test split."""
    from vaelab import charts
    train_x = binarized_set(job.data.train_x, job.mode, "train", job.cfg.seed)
    train_z, _ = encode_set(job.model, train_x, job.data.train_y)
    test_z, _ = encode_set(job.model, job.test_x, job.data.test_y)
    out = latent_classifiers(train_z.numpy(), job.data.train_y.numpy(), test_z.numpy(),
                             job.data.test_y.numpy(), job.cfg.knn)
    titles = {f"{job.cfg.knn}-NN: {out['knn']['accuracy']:.1%}": out["knn"]["confusion"],
              f"logistic regression: {out['logistic']['accuracy']:.1%}": out["logistic"]["confusion"]}
    job.save_figure("eval_confusion", charts.confusion_figure(titles, job.data.classes),
                    f"Test confusion matrices of classifiers fitted to the {len(train_z):,} training encoder "
                    f"means (latent size {train_z.shape[1]}); rows are the true classes, shading their share.")
    return {"features": "encoder means", "train_images": len(train_z), "chance": 1 / len(job.data.classes), **out}


def cvae_section(job: Job) -> dict:
    """The CVAE as a classifier (its label swap is the report's figure)."""
    from vaelab import charts
    pick = job.subset()
    out = cvae_classifier(job.model, job.test_x[pick], job.data.test_y[pick], job.cfg, job.lik, job.generator)
    k, s = len(job.data.classes), job.cfg.classify_samples
    titles = {f"argmax L_{s}: {out['iw']['accuracy']:.1%}": out["iw"]["confusion"],
              f"argmax ELBO ({s} samples): {out['elbo']['accuracy']:.1%}": out["elbo"]["confusion"]}
    job.save_figure("eval_cvae_confusion", charts.confusion_figure(titles, job.data.classes),
                    f"The CVAE as a classifier on {len(pick):,} test images: the label c with the highest "
                    f"bound on log p(x|c) (Bayes rule, uniform prior), by L_{s} and by the ELBO.")
    return {"chance": 1 / k, **out}


def evaluate_run(run_dir, iw_samples: int = 1000, *, progress: bool = False, retrain_classifier: bool = False,
                 **settings) -> dict:
    """Evaluate a run folder (settings: the fields of EvalConfig); writes and returns RUN/eval.json."""
    started = time.perf_counter()
    job = open_job(run_dir, EvalConfig(iw_samples=iw_samples, **settings))
    result = {"run": str(job.run.dir), "model": job.run.config["model"], "dataset": job.data.name,
              "settings": {**asdict(job.cfg), "binarize": job.mode, **job.lik},
              "device": str(device_of(job.model))}
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
    runs.write_eval(job.run.dir, result)
    return result


# ---- the summary in words ---------------------------------------------------------------------------------

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
