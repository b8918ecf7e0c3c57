"""`vaelab evaluate`: how good a trained model is, and what its latent space holds.

    settings.py   what an evaluation measures and how (`vaelab evaluate`'s flags)
    measures.py   the test set through the model: ELBO, bounds, latent statistics and classifiers
    scoring.py    `evaluate_run`: every measure on a run, written to RUN/eval.json   (private to this folder)
    quality.py    sample quality, judged by a small classifier trained once per data set

Modules outside this folder import from here only; the tests check it.
"""

from vaelab.evaluation.measures import (
    ACTIVE_THRESHOLD,
    cvae_classifier,
    elbo_terms,
    iw_scores,
    latent_classifiers,
    latent_stats,
)
from vaelab.evaluation.quality import (
    can_judge,
    classifier_path,
    frechet_distance,
    get_classifier,
    predict,
    sample_quality,
)
from vaelab.evaluation.scoring import (
    Scoring,
    elbo_section,
    evaluate_run,
    format_result,
    iw_section,
    open_scoring,
)
from vaelab.evaluation.settings import EvalConfig

__all__ = [
    "ACTIVE_THRESHOLD",
    "EvalConfig",
    "Scoring",
    "can_judge",
    "classifier_path",
    "cvae_classifier",
    "elbo_section",
    "elbo_terms",
    "evaluate_run",
    "format_result",
    "frechet_distance",
    "get_classifier",
    "iw_scores",
    "iw_section",
    "latent_classifiers",
    "latent_stats",
    "open_scoring",
    "predict",
    "sample_quality",
]
