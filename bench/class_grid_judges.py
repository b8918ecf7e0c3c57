"""How far to trust the per-class grid's acceptance (vaelab/report/figures.py): for a trained run,
decode CANDIDATES draws z ~ q(z|x) per class and compare acceptance rules by how often a held-out
judge, one the figure never asks (logistic regression on the pixels of training images), agrees
that an accepted tile shows its row's class.

    PYTHONPATH=. python3 bench/class_grid_judges.py RUN [RUN ...]

Columns: the rule, tiles accepted of the 10 x CANDIDATES drawn, and the held-out judge's agreement
with the row among them (the figure's precision, as far as a third judge can tell).
"""

import argparse
import platform

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression

from vaelab import latent
from vaelab.evaluation import predict
from vaelab.report import figures
from vaelab.runs import open_run


def held_out_judge(data, n: int = 10_000):
    pick = np.random.default_rng(1).permutation(len(data.train_x))[:n]
    x = data.train_x[pick].flatten(1).float().numpy() / 255
    judge = LogisticRegression(max_iter=300).fit(x, data.train_y.numpy()[pick])
    test_accuracy = judge.score(data.test_x.flatten(1).float().numpy() / 255, data.test_y.numpy())
    return judge, test_accuracy


def rules(judges, images: torch.Tensor, c: int) -> dict:
    probs = predict(judges[0], images)[1]
    top2 = np.sort(probs, 1)[:, -2:]
    votes = judges[2].predict_proba(images.flatten(1).numpy())[:, c]
    argmax = probs.argmax(1) == c
    return {
        "classifier's argmax (before)": argmax,
        "classifier >= 0.8, lead >= 0.5": argmax & (probs[:, c] >= 0.8) & (probs[:, c] - top2[:, 0] >= 0.5),
        "6 of 10 neighbours": votes >= 0.6,
        "both (the figure's rule)": figures.accepted(judges, images, c),
        "classifier >= 0.8 and 6 of 10": argmax & (probs[:, c] >= 0.8) & (votes >= 0.6),
    }


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("runs", nargs="+")
    a = p.parse_args()
    torch.set_num_threads(1)
    print(
        f"{platform.machine()}, torch {torch.__version__}, numpy {np.__version__}; {figures.CANDIDATES} draws per class"
    )
    for folder in a.runs:
        run = open_run(folder)
        judges = figures.judges_for(run)
        third, accuracy = held_out_judge(run.data)
        totals = {}
        labels = run.data.test_y.numpy()
        for c in range(run.data.num_classes):
            z = latent.posterior_draws(run.mu[labels == c], run.logvar[labels == c], figures.CANDIDATES, c)
            images = latent.decode(run.model, z, c if run.conditional else None)
            agree = third.predict(images.flatten(1).numpy()) == c
            for name, ok in rules(judges, images, c).items():
                n, right = totals.get(name, (0, 0))
                totals[name] = (n + ok.sum(), right + (ok & agree).sum())
        print(
            f"\n{folder}: {run.config['model']}, {len(run.rows)} epochs; held-out judge {accuracy:.1%} on test images"
        )
        print("| rule | accepted | held-out judge agrees |")
        print("|---|---:|---:|")
        for name, (n, right) in totals.items():
            print(f"| {name} | {n} | {right / max(n, 1):.1%} |")


if __name__ == "__main__":
    main()
