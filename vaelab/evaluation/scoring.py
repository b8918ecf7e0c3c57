"""`vaelab evaluate RUN`: how good a trained model is, and what its latent space holds.

    RUN/eval.json                        every number below, with the settings that produced it
    RUN/figures/eval_confusion.png       latent classifiers (k-NN, logistic regression): test confusion
    RUN/figures/eval_cvae_confusion.png  a CVAE as a classifier (Bayes rule): test confusion

All scores are in nats per image on the test split (a seeded random subset for the costly
importance-weighted bound and CVAE classifier, when --iw-images asks for one):
- the ELBO and its terms with z = the encoder mean (a plug-in value, not a bound) and with z
  sampled once per image;
- the importance-weighted bound L_K (Burda et al. 2015; vaelab/losses.py, measures.py) with its Monte Carlo
  standard error, and the ELBO averaged over the same K samples, so that L_K >= ELBO is visible;
- KL per latent dimension and the active units (Burda et al. 2015, sec. 5.2: dimension u is active
  when Cov_x(E_q(u|x)[u]) > 0.01);
- k-NN and logistic-regression accuracy on the encoder means, trained on the training split;
- for a conditional model, classification by the label with the highest bound;
- sample quality from a small classifier (quality.py).

On grey pixels the Bernoulli likelihood is not a normalised density (Loaiza-Ganem & Cunningham
2019, "The continuous Bernoulli"), so L_K there ranks models but is not a log-likelihood to set
beside published binarised-MNIST numbers; --binarize static scores the fixed binarised test set.
"""

import time
from dataclasses import asdict, dataclass, field
from datetime import datetime

import torch

from vaelab import latent, losses, runs
from vaelab.data.pixels import binarized_set
from vaelab.device import device_of, resolve_device
from vaelab.errors import VaelabError
from vaelab.evaluation.measures import cvae_classifier, elbo_terms, iw_scores, latent_classifiers, latent_stats
from vaelab.evaluation.quality import can_judge
from vaelab.evaluation.settings import EvalConfig
from vaelab.options import as_given

# ---- the whole evaluation of a run ---------------------------------------------------------------


@dataclass
class Scoring:
    """What every section reads: the opened run, its test images as scored, the settings and one
    seeded generator; and the figures written so far."""

    run: runs.Run
    test_x: torch.Tensor  # uint8, binarised as asked
    mode: str
    lik: dict
    cfg: EvalConfig
    generator: torch.Generator
    figures: dict = field(default_factory=dict)  # name -> caption, for RUN/figures/<name>.png

    def subset(self) -> torch.Tensor:
        """Indices of the test images for the costly scores: all, or a seeded random subset."""
        n = len(self.test_x)
        if self.cfg.iw_images is None or self.cfg.iw_images >= n:
            return torch.arange(n)
        return (
            torch.randperm(n, generator=torch.Generator().manual_seed(self.cfg.seed))[: self.cfg.iw_images]
            .sort()
            .values
        )

    def save_figure(self, name: str, fig_or_array, caption: str) -> None:
        runs.save_figure(self.run.dir, name, fig_or_array)
        self.figures[name] = caption


def open_scoring(run_dir, cfg: EvalConfig, trust_code: bool = False, data=None) -> Scoring:
    run = runs.Run.open(run_dir, resolve_device(cfg.device), data=data, trust_code=trust_code)
    run.model.to(memory_format=torch.channels_last)  # layout only: 1.6-3x faster convs on this CPU
    train_cfg = run.config["train"]
    mode = cfg.binarize or train_cfg.get("binarize", "none")
    if cfg.iw_images is not None and cfg.iw_images > len(run.data.test_x):
        raise VaelabError(
            f"{as_given('iw_images', cfg.iw_images)} is more than the {len(run.data.test_x):,} test images of "
            f"{run.data.name}; give at most {len(run.data.test_x)}, or leave it out to use them all"
        )
    lik = {"likelihood": train_cfg["likelihood"], "std": train_cfg["gaussian_std"]}
    return Scoring(
        run,
        binarized_set(run.data.test_x, mode, "test", cfg.seed),
        mode,
        lik,
        cfg,
        torch.Generator().manual_seed(cfg.seed),
    )


def encode_set(model, x_uint8, y) -> tuple[torch.Tensor, torch.Tensor]:
    """(mu, logvar) [N, D] as CPU tensors (vaelab.latent.encode_set)."""
    mu, logvar = latent.encode_set(model, x_uint8, y)
    return torch.from_numpy(mu), torch.from_numpy(logvar)


def elbo_section(scoring: Scoring) -> tuple[dict, dict]:
    """(ELBO terms on the whole test set, latent statistics)."""
    run = scoring.run
    mu, logvar = encode_set(run.model, scoring.test_x, run.data.test_y)
    t = elbo_terms(run.model, scoring.test_x, run.data.test_y, mu, logvar, scoring.lik, scoring.generator)
    kl = t["kl"].double().mean().item()
    mean_z, sampled_z = t["recon_mean"].double().mean().item(), t["recon_sampled"].double().mean().item()
    elbo = {
        "images": len(mu),
        "kl": kl,
        "mean_z": {"recon": mean_z, "elbo": -(mean_z + kl)},
        "sampled_z": {
            "recon": sampled_z,
            "elbo": -(sampled_z + kl),
            "se_images": losses.summarize(t["recon_sampled"] + t["kl"])["se_images"],
        },
    }
    return elbo, latent_stats(mu, logvar)


def iw_section(scoring: Scoring, progress: bool = False) -> dict:
    """L_K on the (subset of) test images, and the ELBO over the same K samples."""
    run = scoring.run
    started = time.perf_counter()
    pick = scoring.subset()
    s = iw_scores(
        run.model, scoring.test_x[pick], run.data.test_y[pick], scoring.cfg, scoring.lik, scoring.generator, progress
    )
    bound, elbo = losses.summarize(s["bound"], s["variance"]), losses.summarize(s["elbo"])
    gap = losses.summarize(s["bound"] - s["elbo"])  # paired, image by image: >= 0 on every image (Jensen)
    return {
        "samples": scoring.cfg.iw_samples,
        "images": len(pick),
        "bound": bound["mean"],
        "bound_se_mc": bound["se_mc"],
        "bound_se_images": bound["se_images"],
        "elbo": elbo["mean"],
        "elbo_se_images": elbo["se_images"],
        "recon": s["recon"].mean().item(),
        "gap": gap["mean"],
        "gap_se_images": gap["se_images"],
        "ess_mean": s["ess"].mean().item(),
        "seconds": time.perf_counter() - started,
    }


def classifier_section(scoring: Scoring) -> dict:
    """k-NN and logistic regression on the encoder means, training split -> test split. A CVAE's
    images are encoded with their own labels, as it was trained: its z then needs to hold only what
    the label does not (the style), and the classifiers say how much of the class is left in it."""
    run = scoring.run
    from vaelab.report import charts

    train_x = binarized_set(run.data.train_x, scoring.mode, "train", scoring.cfg.seed)
    train_z, _ = encode_set(run.model, train_x, run.data.train_y)
    test_z, _ = encode_set(run.model, scoring.test_x, run.data.test_y)
    out = latent_classifiers(
        train_z.numpy(), run.data.train_y.numpy(), test_z.numpy(), run.data.test_y.numpy(), scoring.cfg.knn
    )
    titles = {
        f"{scoring.cfg.knn}-NN: {out['knn']['accuracy']:.1%}": out["knn"]["confusion"],
        f"logistic regression: {out['logistic']['accuracy']:.1%}": out["logistic"]["confusion"],
    }
    encoded = " (each encoded with its own label)" if run.conditional else ""
    scoring.save_figure(
        "eval_confusion",
        charts.confusion_figure(titles, run.data.classes),
        f"Test confusion matrices of classifiers fitted to the {len(train_z):,} training encoder "
        f"means{encoded} (latent size {train_z.shape[1]}); rows are the true classes, shading their share.",
    )
    return {"features": "encoder means", "train_images": len(train_z), "chance": 1 / len(run.data.classes), **out}


def cvae_section(scoring: Scoring) -> dict:
    """The CVAE as a classifier (its label swap is the report's figure)."""
    run = scoring.run
    from vaelab.report import charts

    pick = scoring.subset()
    out = cvae_classifier(
        run.model, scoring.test_x[pick], run.data.test_y[pick], scoring.cfg, scoring.lik, scoring.generator
    )
    k, s = len(run.data.classes), scoring.cfg.classify_samples
    titles = {
        f"argmax L_{s}: {out['iw']['accuracy']:.1%}": out["iw"]["confusion"],
        f"argmax ELBO ({s} samples): {out['elbo']['accuracy']:.1%}": out["elbo"]["confusion"],
    }
    scoring.save_figure(
        "eval_cvae_confusion",
        charts.confusion_figure(titles, run.data.classes),
        f"The CVAE as a classifier on {len(pick):,} test images: the label c with the highest "
        f"bound on log p(x|c) (Bayes rule, uniform prior), by L_{s} and by the ELBO.",
    )
    return {"chance": 1 / k, **out}


def evaluate_run(
    run_dir,
    iw_samples: int = 1000,
    *,
    progress: bool = False,
    retrain_classifier: bool = False,
    trust_code: bool = False,
    data=None,
    **settings,
) -> dict:
    """Evaluate a run folder (settings: the fields of EvalConfig); writes and returns RUN/eval.json.
    `trust_code`: a run of your own model may import its classes' module (vaelab/models/custom.py)."""
    started = time.perf_counter()
    scoring = open_scoring(run_dir, EvalConfig(iw_samples=iw_samples, **settings), trust_code, data)
    run = scoring.run
    result = {
        "run": str(run.dir),
        "model": run.config["model"],
        "dataset": run.data.name,
        "settings": {**asdict(scoring.cfg), "binarize": scoring.mode, **scoring.lik},
        "device": str(device_of(run.model)),
    }
    if scoring.mode == "none" and scoring.lik["likelihood"] == "bernoulli":
        result["note"] = (
            "grey pixels under a Bernoulli likelihood: the bounds rank models but are not "
            "log-likelihoods comparable with binarised-MNIST results (use --binarize static)"
        )
    result["elbo"], result["latent"] = elbo_section(scoring)
    result["iw"] = iw_section(scoring, progress)
    labelled = run.data.labelled and run.data.num_classes >= 2
    if labelled:  # every model: a CVAE's z, fitted beside a VAE's, shows what its label took over
        result["latent_classifiers"] = classifier_section(scoring)
    else:
        result["note_classifiers"] = "the data have no labels (or one class): no classifier on z to fit"
    if run.conditional:
        result["cvae_classifier"] = cvae_section(scoring)
    if scoring.cfg.quality_samples and not can_judge(run.data):
        result["note_quality"] = "sample quality needs labelled images of at least 4 x 4 pixels: not measured"
    elif scoring.cfg.quality_samples:
        from vaelab.evaluation.quality import sample_quality

        result["sample_quality"] = sample_quality(
            run.model,
            run.data,
            scoring.cfg.quality_samples,
            scoring.cfg.seed,
            scoring.cfg.classifier_epochs,
            retrain_classifier,
        )
    result.update(
        figures=scoring.figures,
        seconds=time.perf_counter() - started,
        created=datetime.now().isoformat(timespec="seconds"),
    )
    runs.write_eval(run.dir, result)
    return result


# ---- the summary in words ---------------------------------------------------------------------------------


def _se(value) -> str:
    return "n/a" if value is None else f"{value:.2f}"  # one image has no spread


def format_result(r: dict) -> str:
    """The terminal summary of eval.json."""
    e, iw, lat = r["elbo"], r["iw"], r["latent"]
    lines = [
        f"{r['model']} on {r['dataset']} ({r['settings']['binarize']} binarisation), nats per image:",
        f"  ELBO, z = mean     {e['mean_z']['elbo']:9.2f}  (recon {e['mean_z']['recon']:.2f}, KL {e['kl']:.2f}; "
        f"{e['images']:,} images)",
        f"  ELBO, z sampled    {e['sampled_z']['elbo']:9.2f}  ± {_se(e['sampled_z']['se_images'])} (images; recon "
        f"{e['sampled_z']['recon']:.2f})",
        f"  on {iw['images']:,} of them, the same images for both:",
        f"    ELBO             {iw['elbo']:9.2f}  ± {_se(iw['elbo_se_images'])} (images; mean of {iw['samples']} "
        "single-sample ELBOs)",
        f"    L_{iw['samples']:<15}{iw['bound']:9.2f}  ± {iw['bound_se_mc']:.2f} (Monte Carlo), "
        f"± {_se(iw['bound_se_images'])} (images); L_K - ELBO = {iw['gap']:.2f}",
        f"  active units       {lat['active_units']} of {lat['latent_dim']}",
    ]
    if "latent_classifiers" in r:
        c = r["latent_classifiers"]
        lines.append(
            f"  latent classifiers {c['knn']['k']}-NN {c['knn']['accuracy']:.1%}, "
            f"logistic {c['logistic']['accuracy']:.1%} (chance {c['chance']:.0%})"
        )
    if "cvae_classifier" in r:
        c = r["cvae_classifier"]
        lines.append(
            f"  CVAE classifier    {c['iw']['accuracy']:.1%} by L_{c['samples_per_label']}, "
            f"{c['elbo']['accuracy']:.1%} by the ELBO"
        )
    if "sample_quality" in r:
        q = r["sample_quality"]
        lines.append(
            f"  samples            classifier-feature Fréchet distance {q['frechet_distance']:.2f} "
            f"(train vs test {q['frechet_train_vs_test']:.2f}), confidence {q['mean_confidence']:.1%}, "
            f"balance {q['balance']:.3f} (classifier test accuracy {q['classifier']['test_accuracy']:.1%})"
        )
    return "\n".join(lines)
