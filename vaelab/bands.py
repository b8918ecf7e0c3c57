"""Reference bands: what vaelab's seed models reach after a short training, mean ± sd over seeds,
measured by bench/bands.py and shipped as vaelab/bands.json with the versions and machine behind it.

Two kinds, each keyed by model, data set, epochs and batch size: "check", the loop `vaelab check`
trains a student's model with (PyTorch's default initialisation); "train", `vaelab train` with its
defaults, which the report compares a run with. A run stands "within the band" when its test −ELBO
is no more than TOLERANCE standard deviations (and at least MIN_WIDTH nats) from the mean.
"""

import json
from functools import cache
from pathlib import Path

PATH = Path(__file__).with_name("bands.json")
TOLERANCE = 3.0  # standard deviations either side of the mean
MIN_WIDTH = 2.0  # nats: the least half-width, so five close seeds do not make a band a point


@cache
def _all() -> dict:
    return json.loads(PATH.read_text()) if PATH.is_file() else {"bands": {}}


def band_key(kind: str, model: str, dataset: str, epochs: int, batch_size: int) -> str:
    return f"{kind}/{model}/{dataset}/epochs={epochs}/batch={batch_size}"


def get_band(kind: str, model: str, dataset: str, epochs: int, batch_size: int) -> dict | None:
    """The band of `model` on `dataset` after `epochs` at `batch_size`, or None when none was measured.

    Examples:
        >>> band = get_band("train", "mlp", "mnist-sample", 2, 32)
        >>> band["neg_elbo"]["mean"]  # test −ELBO in nats, mean over the seeds
    """
    band = _all()["bands"].get(band_key(kind, model, dataset, epochs, batch_size))
    return None if band is None else {**band, "measured": _all().get("measured", {})}


def half_width(band: dict) -> float:
    return max(TOLERANCE * band["neg_elbo"]["sd"], MIN_WIDTH)


def where(neg_elbo: float, band: dict) -> tuple[bool, str]:
    """(whether a test −ELBO is at most the band's top, a sentence saying where it stands)."""
    mean, sd = band["neg_elbo"]["mean"], band["neg_elbo"]["sd"]
    seeds = len(band.get("seeds", [])) or "several"
    ref = f"the reference {mean:.1f} ± {sd:.1f} nats over {seeds} seeds"
    gap = neg_elbo - mean
    if abs(gap) <= half_width(band):
        return True, f"test −ELBO {neg_elbo:.1f} nats: within the reference band ({ref})"
    if gap < 0:
        return True, f"test −ELBO {neg_elbo:.1f} nats: {-gap:.1f} nats better than {ref}"
    return False, f"test −ELBO {neg_elbo:.1f} nats: {gap:.1f} nats worse than {ref}"


SAME_AS_BAND = ("model", "dataset", "data_dir", "epochs", "batch_size", "seed", "device", "eval_batch_size", "speed")


def run_standing(config: dict, last_row: dict | None) -> str | None:
    """Where a run (its config.json and its last metrics row) stands against the "train" band of its
    model, data set, epochs and batch size; None when no band was measured for those, or when the run
    changed a setting the band kept at its default (β, objective, learning rate, the model's options).

    Examples:
        >>> run_standing(run.config, run.rows[-1])
        'test −ELBO 183.2 nats: within the reference band (the reference 181.5 ± 1.4 nats over 5 seeds)'
    """
    from dataclasses import asdict

    from vaelab.config import TrainConfig
    from vaelab.models import MODELS, make_config

    train, model = config.get("train", {}), config.get("model")
    if last_row is None or model not in MODELS or last_row.get("epoch") != train.get("epochs"):
        return None
    defaults = asdict(TrainConfig())
    if any(train.get(k, v) != v for k, v in defaults.items() if k not in SAME_AS_BAND):
        return None
    data = config.get("data", {})
    preset = make_config(model, tuple(data.get("image_shape", ())), len(data.get("classes", [])))
    if json.loads(json.dumps(asdict(preset))) != config.get("model_config"):
        return None
    band = get_band("train", model, data.get("name"), train["epochs"], train["batch_size"])
    if band is None:
        return None
    ok, text = where(-last_row["test_elbo"], band)
    if not ok:
        text += (
            ": check the data (pixels in [0, 1]), that the run did not stop early, and the seed's luck "
            "(train another seed: the band's spread is the seeds')"
        )
    setting = f"{model} on {data.get('name')} for {train['epochs']} epochs at batch {train['batch_size']}"
    return f"Against runs of {setting}: {text}."
