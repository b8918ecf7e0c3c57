"""The MMD objective (InfoVAE) on the MMD of encoder means against the MMD of sampled codes:
does the code collapse onto the prior? Trains each model at examples/03's settings (mnist-sample,
batch 32, MMD weight 1000) for each seed and both --mmd-codes, and prints one row per run.

    PYTHONPATH=. python3 bench/mmd_codes.py --models conv,mlp --seeds 0,1,2 --epochs 2

Columns: test reconstruction, KL and ELBO in nats per image, the spread (standard deviation over
the test set) of each coordinate of the encoder means, the mean posterior sigma, and whether the
run's end-of-training notice called it collapsed. A collapsed run has KL near 0, spread near 0 and
sigma near 1 (q(z|x) = N(0, I) for every image).
"""

import argparse
import platform
import tempfile
import time

import numpy as np
import torch

from vaelab.config import TrainConfig
from vaelab.runs import open_run
from vaelab.training import train
from vaelab.training.advice import collapse_notice


def one_run(model: str, codes: str, seed: int, epochs: int, root: str) -> list:
    cfg = TrainConfig(
        model=model,
        dataset="mnist-sample",
        epochs=epochs,
        batch_size=32,
        objective="mmd",
        mmd_weight=1000.0,
        mmd_codes=codes,
        seed=seed,
        device="cpu",
    )
    started = time.perf_counter()
    run = open_run(train(cfg, out=f"{root}/{model}-{codes}-{seed}", progress=False))
    row = run.rows[-1]
    spread = " ".join(f"{s:.2f}" for s in run.mu.std(0))
    sigma = float(np.exp(0.5 * run.logvar).mean())
    collapsed = "yes" if collapse_notice(row, cfg, run.dir) else "no"
    return [
        model,
        codes,
        seed,
        f"{row['test_recon']:.1f}",
        f"{row['test_kl']:.3f}",
        f"{row['test_elbo']:.1f}",
        spread,
        f"{sigma:.2f}",
        collapsed,
        f"{time.perf_counter() - started:.0f}",
    ]


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", default="conv,mlp")
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--codes", default="sample,mean")
    a = p.parse_args()
    torch.set_num_threads(1)
    print(
        f"{platform.processor() or platform.machine()}, torch {torch.__version__}, numpy {np.__version__}, "
        f"Python {platform.python_version()}; {a.epochs} epochs, batch 32, MMD weight 1000, mnist-sample"
    )
    print("| model | MMD of | seed | test recon | test KL | test ELBO | spread of mu | mean sigma | collapsed | s |")
    print("|---|---|---:|---:|---:|---:|---|---:|---|---:|")
    with tempfile.TemporaryDirectory() as root:
        for model in a.models.split(","):
            for seed in map(int, a.seeds.split(",")):
                for codes in a.codes.split(","):
                    print("| " + " | ".join(map(str, one_run(model, codes, seed, a.epochs, root))) + " |", flush=True)


if __name__ == "__main__":
    main()
