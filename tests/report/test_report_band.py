"""The report's "how good is the model" section says where the run stands against its reference band."""

import re

import pytest
from conftest import copy_run

from vaelab import bands
from vaelab.report import make_report
from vaelab.runs import read_metrics


@pytest.mark.slow  # the shared cvae run: 2 epochs at batch 32, a band that was measured
def test_the_report_places_the_run_against_its_band(trained_run, tmp_path):
    folder = copy_run(trained_run("cvae"), tmp_path / "cvae")
    page = make_report(folder).read_text()
    neg_elbo = -read_metrics(folder)[-1]["test_elbo"]
    band = bands.get_band("train", "cvae", "mnist-sample", 2, 32)
    shown = re.search(r"<p class='band'>(.*?)</p>", page).group(1)
    assert shown.startswith(f"Against runs of cvae on mnist-sample for 2 epochs at batch 32: test −ELBO {neg_elbo:.1f}")
    assert f"{band['neg_elbo']['mean']:.1f} ± {band['neg_elbo']['sd']:.1f}" in shown
