"""Reference bands: what a seed model reaches on a data set after a short training, mean ± sd over
seeds, stored in the package (vaelab/bands.json) for `vaelab check` and the report.

    PYTHONPATH=. nice python3 bench/bands.py [--seeds 0,1,2,3,4] [--models mlp,...] [--datasets mnist-sample]
                                             [--out vaelab/bands.json] [--only check|train]

Two kinds of band, each keyed by model, data set, epochs and batch size:

  check   the loop `vaelab check` trains a student's model with (vaelab/checking/training.py): vaelab's
          architecture with PyTorch's default initialisation, Adam 1e-3, the exercise's loss pieces;
          scored by the check's scorer (test -ELBO with fixed noise, k-NN on the encoder means).
  train   `vaelab train` with its defaults at the course's short settings; the numbers its run
          records (metrics.jsonl, last epoch: test -ELBO, reconstruction, KL), plus k-NN and active
          units of the trained model by the same scorer. The report compares a run with these.

Every result is written as soon as it is measured, so an interrupted run keeps what it finished;
the file holds the versions, machine and seeds behind the numbers. Fashion-MNIST is measured when
Debian's dataset-fashion-mnist is installed (or --datasets names it and its files are found).
"""

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import torch

from vaelab import __version__
from vaelab.checking.reference import PIECES
from vaelab.checking.training import ReferenceModel, ShortTraining, score, train_and_score
from vaelab.config import TrainConfig
from vaelab.data import load_dataset
from vaelab.errors import VaelabError
from vaelab.runs import load_model, read_metrics
from vaelab.training import train

MODELS = ("mlp", "mlp-small", "conv", "conv-small", "cvae", "cvae-mlp")
CHECK = ((2, 32),)  # (epochs, batch) of the check's training
TERMS = ("neg_elbo", "recon", "kl", "knn_accuracy", "active_units")


def summarize(values: list[dict]) -> dict:
    out = {}
    for term in TERMS:
        xs = [v[term] for v in values]
        out[term] = {"mean": statistics.fmean(xs), "sd": statistics.stdev(xs) if len(xs) > 1 else 0.0}
    out["per_seed"] = {term: [round(v[term], 4) for v in values] for term in TERMS}
    out["seconds"] = statistics.fmean(v["seconds"] for v in values)
    return out


def measure_check(model: str, data, epochs: int, batch: int, seed: int) -> dict:
    settings = ShortTraining(data.name, epochs, batch, seed=seed)
    pieces = {k: PIECES[k] for k in ("reparameterize", "kl_divergence", "reconstruction_loss")}
    return train_and_score(lambda: ReferenceModel(model), pieces, settings, data)


class TrainedModel:
    def __init__(self, model):
        self.model, self.conditional = model, bool(model.config.num_classes)

    def encode(self, x, y):
        return self.model.encode(x, y if self.conditional else None)

    def decode(self, z, y):
        return self.model.decode(z, y if self.conditional else None)

    def bce(self, logits, x):
        from vaelab.checking.training import bce_logits

        return bce_logits(logits, x)


def measure_train(model: str, data, epochs: int, batch: int, seed: int) -> dict:
    with tempfile.TemporaryDirectory() as folder:
        cfg = TrainConfig(model=model, dataset=data.name, epochs=epochs, batch_size=batch, seed=seed, device="cpu")
        start = time.perf_counter()
        train(cfg, {}, out=folder, overwrite=True, progress=False)
        seconds = time.perf_counter() - start
        last = read_metrics(folder)[-1]
        trained, _ = load_model(folder, "cpu")
        scored = score(TrainedModel(trained.eval()), data)
    return {
        "neg_elbo": -last["test_elbo"],
        "recon": last["test_recon"],
        "kl": last["test_kl"],
        "knn_accuracy": scored["knn_accuracy"],
        "active_units": scored["active_units"],
        "seconds": seconds,
    }


def machine() -> dict:
    return {
        "vaelab": __version__,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.processor() or platform.system()}",
        "threads": torch.get_num_threads(),
        "date": time.strftime("%Y-%m-%d", time.gmtime()),
    }


def datasets(wanted: str | None) -> list[str]:
    if wanted:
        return wanted.split(",")
    names = ["mnist-sample"]
    try:
        load_dataset("fashion-mnist", download=False)
        names.append("fashion-mnist")
    except VaelabError:
        print("Fashion-MNIST is not installed (dpkg -L dataset-fashion-mnist): measuring mnist-sample only")
    return names


def markdown(bands: dict) -> str:
    """The bands as a Markdown table, for bench/README.md."""
    lines = [
        "| kind | model | data | epochs | batch | test −ELBO | reconstruction | KL | k-NN on z | active | s/run |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for key, b in bands["bands"].items():
        kind, model, data, epochs, batch = key.split("/")
        lines.append(
            f"| {kind} | {model} | {data} | {epochs.split('=')[1]} | {batch.split('=')[1]} | "
            f"{b['neg_elbo']['mean']:.2f} ± {b['neg_elbo']['sd']:.2f} | "
            f"{b['recon']['mean']:.2f} ± {b['recon']['sd']:.2f} | {b['kl']['mean']:.2f} ± {b['kl']['sd']:.2f} | "
            f"{b['knn_accuracy']['mean']:.3f} | "
            f"{b['active_units']['mean']:.1f} | {b['seconds']:.1f} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", default="0,1,2,3,4")
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--datasets", default=None)
    parser.add_argument("--only", choices=("check", "train"), default=None)
    parser.add_argument("--out", default=str(Path(__file__).resolve().parent.parent / "vaelab" / "bands.json"))
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--train-settings", default="2x32,2x128,10x32", help="EPOCHSxBATCH of the train bands")
    parser.add_argument("--table", action="store_true", help="print the stored bands as Markdown and stop")
    args = parser.parse_args()
    if args.table:
        print(markdown(json.loads(Path(args.out).read_text())))
        return
    torch.set_num_threads(args.threads)
    seeds = [int(s) for s in args.seeds.split(",")]
    out = Path(args.out)
    bands = json.loads(out.read_text()) if out.is_file() else {"bands": {}}
    bands["measured"] = {**machine(), "seeds": seeds}
    print(json.dumps(bands["measured"]))
    train_settings = [tuple(int(v) for v in s.split("x")) for s in args.train_settings.split(",")]
    plan = [("check", CHECK, measure_check), ("train", train_settings, measure_train)]
    for name in datasets(args.datasets):
        data = load_dataset(name)
        for kind, settings, measure in plan:
            if (args.only and kind != args.only) or (kind == "check" and name != ShortTraining().dataset):
                continue  # a check trains on the bundled sample only
            for epochs, batch in settings:
                for model in args.models.split(","):
                    key = f"{kind}/{model}/{name}/epochs={epochs}/batch={batch}"
                    values = [measure(model, data, epochs, batch, seed) for seed in seeds]
                    bands["bands"][key] = summarize(values) | {"seeds": seeds}
                    out.write_text(json.dumps(bands, indent=1) + "\n")
                    b = bands["bands"][key]
                    print(
                        f"{key:<48} -ELBO {b['neg_elbo']['mean']:7.2f} ± {b['neg_elbo']['sd']:5.2f}  "
                        f"recon {b['recon']['mean']:7.2f}  KL {b['kl']['mean']:5.2f}  "
                        f"kNN {b['knn_accuracy']['mean']:.3f}  active {b['active_units']['mean']:.1f}  "
                        f"{b['seconds']:.1f} s/run",
                        flush=True,
                    )


if __name__ == "__main__":
    main()
