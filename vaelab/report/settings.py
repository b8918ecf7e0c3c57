"""What a report draws: its settings (`vaelab report`'s flags are their fields), checked against
the classes of the run's data, with defaults fitted to them."""

from dataclasses import dataclass, replace

from vaelab.errors import VaelabError
from vaelab.options import MAX_SEED, check, label_list, named, opt, pair_list, percentile, positive_float

Z_KINDS = ("mean", "sample")
SPLITS = ("test", "train")
PROJECTIONS = ("pca", "tsne")
RANGES = ("data", "scale")
GRID_LIMITS = (2, 64)
MAX_SAMPLES = 10_000  # images of one samples figure or `vaelab sample` grid: a 5,600-pixel square of digits
MAX_PER_CLASS = 20  # tiles per row of the per-class grid (its candidates are 100 codes a class)
MAX_STEPS = 32  # images of an interpolation walk
MAX_FIGURES = 20  # CVAE manifold grids (--labels) or walks (--walk) of one report


# ---- the settings, and how their flags' text reads ------------------------------------------------


def grid_size(text: str) -> int:
    low, high = GRID_LIMITS
    if not text.strip().isdigit() or not low <= int(text) <= high:
        raise ValueError(f"expected a whole number from {low} to {high}, got {text!r}")
    return int(text)


@dataclass(frozen=True)
class ReportSettings:
    """What `make_report` draws; `vaelab report`'s flags are these fields."""

    grid: int = opt(
        15, "images per side of the manifold grids, 2 to 64", min=GRID_LIMITS[0], max=GRID_LIMITS[1], parse=grid_size
    )
    labels: tuple[int, ...] = opt(
        (4, 8), "classes of the CVAE manifold grids, comma separated", parse=label_list, items=MAX_FIGURES
    )
    walk: tuple[tuple[int, int], ...] = opt(
        ((1, 7), (4, 9), (3, 8)), "class pairs A:B of the interpolation walks", parse=pair_list, items=MAX_FIGURES
    )
    z: str = opt("mean", "scatter the encoder means or one reparameterised sample per image", choices=Z_KINDS)
    split: str = opt("test", "scatter 5,000 test or training images", choices=SPLITS)
    projection: str = opt(
        "pca", "for a latent size above 2: PCA, or t-SNE (slower: seconds to minutes)", choices=PROJECTIONS
    )
    range_: str = opt(
        "data", "z range of the grids: min/max of the test encoder means, or ±--scale", choices=RANGES, flag="--range"
    )
    scale: float = opt(
        3.0, "half-width of the grids with --range scale, in prior standard deviations", above=0.0, parse=positive_float
    )
    trim: float = opt(
        0.0,
        "with --range data, span percentiles TRIM to 100-TRIM of the means instead of min/max",
        min=0.0,
        parse=percentile,
    )
    seed: int = opt(0, "seed of the scatter subset and of sampled z", min=0, max=MAX_SEED)
    samples: int = opt(100, "images of the samples figure", min=1, max=MAX_SAMPLES)
    per_class: int = opt(5, "samples per class in the per-class grid", min=1, max=MAX_PER_CLASS)
    steps: int = opt(10, "images along each interpolation walk", min=2, max=MAX_STEPS)

    def __post_init__(self):
        if isinstance(self.labels, list):  # as JSON or a notebook may give them
            object.__setattr__(self, "labels", tuple(self.labels))
        if isinstance(self.walk, list | tuple) and all(isinstance(p, list | tuple) for p in self.walk):
            object.__setattr__(self, "walk", tuple(tuple(p) for p in self.walk))
        check(self)
        if not self.trim < 50:
            raise VaelabError(f"{named('trim')} is a percentile from 0 up to 50, got {self.trim}")


def settings_problem(s: ReportSettings, classes) -> str | None:
    """What is wrong with the classes the settings name, for a data set with these classes, or None."""
    k = len(classes)
    valid = f"this run's data has classes 0..{k - 1} ({', '.join(classes)})"
    bad_labels = [str(x) for x in s.labels if not 0 <= x < k]
    bad_pairs = [f"{a}:{b}" for a, b in s.walk if not (0 <= a < k and 0 <= b < k)]
    if bad_labels:
        return f"{named('labels')} {','.join(bad_labels)}: not a class; {valid}"
    if bad_pairs:
        return f"{named('walk')} {','.join(bad_pairs)}: not a pair of classes; {valid}"
    return None


def fitted(s: ReportSettings, classes) -> ReportSettings:
    """The settings with the default labels and walks kept to the classes the data has, so a data
    set of fewer classes gets a report with its own defaults; labels given by the user are checked."""
    k, default = len(classes), ReportSettings()
    labels = tuple(c for c in s.labels if c < k) or tuple(range(min(2, k))) if s.labels == default.labels else s.labels
    walk = s.walk
    if s.walk == default.walk:
        walk = tuple((a, b) for a, b in s.walk if a < k and b < k) or (((0, k - 1),) if k > 1 else ())
    return replace(s, labels=labels, walk=walk)
