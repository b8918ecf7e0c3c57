"""The report page and the comparison: every figure referenced and present, the runs' real numbers."""

import argparse
import re
from types import SimpleNamespace

import numpy as np
import pytest
from conftest import copy_run

from vaelab.cli.read import add_compare_parser, add_report_parser
from vaelab.comparison import compare_runs, latent_summary, run_summary
from vaelab.errors import VaelabError
from vaelab.report import make_report
from vaelab.runs import Run, read_metrics


@pytest.fixture(scope="module")
def runs(tmp_path_factory, trained_run):
    """Copies of the shared conv and cvae-mlp runs on the bundled sample, each reported once."""
    root = tmp_path_factory.mktemp("report")
    conv, cvae = copy_run(trained_run("conv"), root / "conv"), copy_run(trained_run("cvae-mlp"), root / "cvae")
    pages = {"conv": make_report(conv), "cvae": make_report(cvae, labels=(4, 8), range_="scale", scale=2.5)}
    return SimpleNamespace(root=root, conv=conv, cvae=cvae, pages=pages)


def referenced(page) -> list[str]:
    return re.findall(r'src="([^"]+)"', page.read_text())


@pytest.mark.parametrize("name", ["conv", "cvae"])
def test_report_references_every_figure_and_every_reference_exists(runs, name):
    page = runs.pages[name]
    sources = referenced(page)
    assert sources and all(s.startswith("figures/") for s in sources)  # relative: opens from disk
    assert all((page.parent / s).is_file() for s in sources)
    on_disk = {f"figures/{p.name}" for p in (page.parent / "figures").glob("*.png")}
    assert set(sources) == on_disk
    text = page.read_text()
    assert "<script" not in text and "http://" not in text and "https://" not in text
    assert text.count("<figcaption>") == len(sources)


def test_a_vae_report_has_one_grid_a_cvae_one_per_label(runs):
    conv, cvae = set(referenced(runs.pages["conv"])), set(referenced(runs.pages["cvae"]))
    assert {
        "figures/manifold.png",
        "figures/origin.png",
        "figures/scatter.png",
        "figures/curves.png",
        "figures/classes.png",
        "figures/classes_grid.png",
        "figures/walks.png",
        "figures/architecture.png",
        "figures/reconstructions.png",
    } <= conv
    assert {"figures/manifold_label4.png", "figures/manifold_label8.png", "figures/origins.png"} <= cvae
    assert "figures/manifold.png" not in cvae


def test_captions_say_how_each_figure_was_made(runs):
    conv, cvae = runs.pages["conv"].read_text(), runs.pages["cvae"].read_text()
    assert "Encoder means of all 1,000 test images" in conv
    assert "min/max of the 1,000 test encoder means" in conv
    assert "±2.5 on each axis" in cvae and "with label 4" in cvae
    assert "label moves with z" in cvae and "the same z in every row" in cvae


def test_report_shows_the_runs_real_numbers(runs):
    text = runs.pages["conv"].read_text()
    last = read_metrics(runs.conv)[-1]
    for key in ("train_total", "test_total", "test_kl", "test_elbo"):
        assert f"<td class=n>{last[key]:,.2f}</td>" in text, key
    assert "62,794" in text and "65,089" in text and "127,883" in text  # encoder, decoder, total


def test_a_second_report_with_other_labels_leaves_no_stale_figure(runs):
    page = make_report(runs.cvae, grid=4, labels=(2,), walk=((0, 1),))
    names = {p.name for p in (page.parent / "figures").glob("*.png")}
    assert "manifold_label2.png" in names and "manifold_label4.png" not in names
    assert set(referenced(page)) == {f"figures/{n}" for n in names}


def parse(*argv):
    parser = argparse.ArgumentParser(prog="vaelab")
    sub = parser.add_subparsers(dest="command", required=True)
    add_report_parser(sub)
    add_compare_parser(sub)
    return parser.parse_args([str(a) for a in argv])


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--grid", "1"], "--grid: expected a whole number from 2 to 64, got '1'"),
        (["--grid", "65"], "from 2 to 64"),
        (["--walk", "1-7"], "expected class pairs A:B"),
        (["--labels", "4;8"], "expected class indices separated by commas"),
        (["--z", "median"], "invalid choice: 'median'"),
        (["--scale", "-1"], "--scale: expected a number above 0"),
    ],
)
def test_bad_report_flags_give_clear_errors(runs, capsys, flags, message):
    with pytest.raises(SystemExit) as exit_:
        parse("report", runs.conv, *flags)
    assert exit_.value.code == 2 and message in capsys.readouterr().err


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--labels", "4,12"], "--labels 12: not a class; this run's data has classes 0..9"),
        (["--walk", "1:7,3:10"], "--walk 3:10: not a pair of classes"),
    ],
)
def test_classes_outside_the_runs_data_are_refused_before_any_work(runs, capsys, flags, message):
    args = parse("report", runs.conv, *flags)
    with pytest.raises(SystemExit) as exit_:
        args.handler(args)
    assert exit_.value.code == 2 and message in capsys.readouterr().err


def test_make_report_refuses_bad_settings_with_the_fix(runs):
    with pytest.raises(VaelabError, match="^grid must be from 2 to 64, got 100"):
        make_report(runs.conv, grid=100)


def test_compare_table_holds_the_runs_real_numbers(runs, capsys, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(runs.root / "cache"))  # a private sample-quality classifier
    out = runs.root / "compared"
    args = parse("compare", runs.conv, runs.cvae, "--out", out, "--quality-samples", "1000")
    args.handler(args)
    printed = capsys.readouterr().out
    for run, model in ((runs.conv, "conv"), (runs.cvae, "cvae-mlp")):
        rows = read_metrics(run)
        last = rows[-1]
        line = next(line for line in printed.splitlines() if line.startswith(f"| {run.name} |"))
        cells = [c.strip() for c in line.strip("|").split("|")]
        assert cells[1:4] == [model, "mnist-sample", "2"]
        assert cells[5] == str(len(rows))
        assert cells[6:11] == [
            f"{last[k]:,.2f}" for k in ("train_total", "test_total", "test_recon", "test_kl", "test_elbo")
        ]
        assert float(cells[11]) == pytest.approx(sum(r["seconds"] for r in rows) / len(rows), abs=0.006)
        prior_mmd, active, knn, logistic, frechet, confidence, balance = cells[12:19]
        assert 0 <= float(prior_mmd) < 2 and active in ("0", "1", "2")
        assert all(0 <= float(a.rstrip("%")) <= 100 for a in (knn, logistic))
        if model == "conv":  # a VAE's 2-D code holds much of the digit (chance is 10%)
            assert float(knn.rstrip("%")) > 50, cells
        assert (
            float(frechet.replace(",", "")) > 0
            and 10 <= float(confidence.rstrip("%")) <= 100
            and 0 <= float(balance) <= 1
        )
    page = out / "compare.html"
    assert f"{read_metrics(runs.cvae)[-1]['test_elbo']:,.2f}" in page.read_text()
    assert "On mnist-sample, the class is read from z at conv " in page.read_text()  # VAE against CVAE
    assert sorted(referenced(page)) == ["curves.png", "manifolds.png", "samples.png", "scatters.png"]
    assert all((out / s).is_file() for s in referenced(page))


def test_compare_measures_how_far_the_codes_are_from_the_prior():
    """0 for codes drawn from N(0, I); large for codes far from it; the active units counted."""
    g = np.random.default_rng(0)
    near = SimpleNamespace(mu=g.standard_normal((3000, 2)), logvar=np.full((3000, 2), -30.0))
    far = SimpleNamespace(mu=near.mu * 0.1 + [3.0, 0.0], logvar=near.logvar)
    dead = SimpleNamespace(mu=np.c_[near.mu[:, :1], np.zeros(3000)], logvar=near.logvar)
    assert latent_summary(near)["prior_mmd"] < 0.01 < 0.5 < latent_summary(far)["prior_mmd"]
    assert latent_summary(near)["active_units"] == 2 and latent_summary(dead)["active_units"] == 1


def test_compare_refuses_too_few_samples_for_a_frechet_distance(capsys):
    with pytest.raises(SystemExit) as exit_:
        parse("compare", "RUN", "--quality-samples", "10")
    assert exit_.value.code == 2 and "0 (skip) or a whole number of at least 100" in capsys.readouterr().err


def test_run_summary_counts_both_halves_of_the_model(runs):
    summary = run_summary(Run.open(runs.conv))
    assert summary["params"] == 62_794 + 65_089 and summary["latent_dim"] == 2


def test_compare_needs_at_least_one_run(tmp_path):
    with pytest.raises(VaelabError, match="at least one run folder"):
        compare_runs([], tmp_path)
