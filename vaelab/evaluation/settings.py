"""What `vaelab evaluate` measures and how: its settings (the command's flags are their fields)."""

from dataclasses import dataclass

from vaelab.data.pixels import BINARIZE_MODES
from vaelab.device import device_problem
from vaelab.options import MAX_SEED, check, opt


@dataclass(frozen=True)
class EvalConfig:
    iw_samples: int = opt(
        1000, "importance samples K per image for the bound L_K (Burda et al. 2015)", min=1, cap=100_000
    )
    iw_images: int | None = opt(
        None,
        "score L_K and the CVAE classifier on this many test images, a seeded random subset; None: all "
        "(cost: K x images decoder passes)",
        min=1,
    )
    binarize: str | None = opt(
        None,
        "score binarised test pixels: dynamic (one draw from --seed), static (the fixed draw) or none (grey); "
        "None: the run's training setting",
        choices=BINARIZE_MODES,
    )
    seed: int = opt(0, "seed of the z samples, the image subset and dynamic binarisation", min=0, max=MAX_SEED)
    batch_size: int = opt(100, "test images scored together", min=1)
    decode_batch: int = opt(
        2000, "most decoder inputs (images x samples) in one pass; lower it if memory runs out", min=1
    )
    knn: int = opt(5, "neighbours of the k-NN latent classifier", min=1)
    classify_samples: int = opt(
        10, "importance samples per label when a CVAE classifies (1: a single-sample ELBO)", min=1
    )
    quality_samples: int = opt(
        10_000, "generated images scored by the sample-quality classifier; 0 skips it", min=0, cap=100_000
    )
    classifier_epochs: int | None = opt(
        None,
        "epochs of the sample-quality classifier when first trained for a data set; None: 3 on a full set, "
        "up to 15 on a small one",
        min=1,
    )
    device: str = opt("auto", "where to evaluate: auto, cpu, cuda, cuda:N or mps", valid=device_problem)

    def __post_init__(self):
        check(self)
