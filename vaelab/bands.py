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
