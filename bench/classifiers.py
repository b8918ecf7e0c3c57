"""Train the sample-quality classifiers vaelab ships, for the data sets on hand.

The report's per-class grid, `evaluate` and `compare` judge images with a small classifier per data
set (vaelab/evaluation/quality.py). Trained on first use it costs 15 s (the sample) or 45 s
(Fashion-MNIST) on one CPU thread; the ones this script writes into vaelab/evaluation/classifiers/
are found by the content of the data instead. Run it again when the classifier or the data
changes (tests/evaluation/test_evaluate.py fails until then):

    PYTHONPATH=. python3 bench/classifiers.py            # mnist-sample and fashion-mnist
"""

import argparse
import platform

import torch

from vaelab.data import load_dataset
from vaelab.evaluation.quality import BUNDLED, classifier_path, default_epochs, save_classifier, trained_classifier


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", default="mnist-sample,fashion-mnist")
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {platform.machine()}, {torch.get_num_threads()} threads")
    print("| data set | file | epochs | test accuracy | seconds |\n|---|---|---:|---:|---:|")
    for name in args.datasets.split(","):
        data = load_dataset(name)
        model, info = trained_classifier(data, default_epochs(len(data.train_x)))
        path = BUNDLED / classifier_path(data).name
        for old in BUNDLED.glob(f"{path.name.rsplit('-', 1)[0]}-*.safetensors"):
            old.unlink()  # the data's earlier content, if it changed
        save_classifier(path, model, info)
        print(
            f"| {name} | {path.name} | {info['epochs']} | {info['test_accuracy']:.2%} | {info['train_seconds']:.1f} |"
        )


if __name__ == "__main__":
    main()
