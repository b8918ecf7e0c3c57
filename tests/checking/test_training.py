"""The short training: a correct solution, trained with its own loss, lands in the reference band of
its exercise; a model that learns nothing is told how far it is from it."""

from pathlib import Path

import pytest

import vaelab

STUDENTS = Path(__file__).resolve().parent / "students"


@pytest.mark.slow  # 2 epochs of the sample each
@pytest.mark.parametrize(
    "name, exercise",
    [("mlp_correct.py", "mlp"), ("mlp_sigmoid.py", "mlp"), ("conv_correct.py", "conv"), ("cvae_correct.py", "cvae")],
)
def test_a_correct_solution_lands_in_the_band(name, exercise):
    # what is asserted is the band; the time limit (a hanging submission) is tested in test_runner.py,
    # and 2 epochs can pass 180 s on a loaded 2-core machine
    report = vaelab.check(STUDENTS / name, exercise, isolate=False, time_limit=900)
    band = {c.id: c for c in report.checks}["training.band"]
    assert band.passed, report.table()
    assert "after 2 epochs on mnist-sample (batch 32)" in band.message
    trained = report.training
    assert trained["neg_elbo"] < 260 and trained["recon"] + trained["kl"] == pytest.approx(
        trained["neg_elbo"], abs=0.01
    )
    assert report.passed


@pytest.mark.slow
def test_a_model_trained_with_a_loss_that_ignores_the_kl_is_out_of_the_band():
    """Its KL term 1000 times too small: the code drifts away from the prior and the test −ELBO, which
    counts the true KL, is far worse than the band."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("mlp_correct", STUDENTS / "mlp_correct.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    report = vaelab.check(
        exercise="mlp",
        Encoder=module.Encoder,
        Decoder=module.Decoder,
        reparameterize=module.reparameterize,
        reconstruction_loss=module.reconstruction_loss,
        kl_divergence=lambda mu, logvar: module.kl_divergence(mu, logvar) / 1000,
    )
    checks = {c.id: c for c in report.checks}
    assert checks["kl_divergence.value"].status == "fail"
    assert checks["training.band"].status == "fail", report.table()
    assert "nats worse than the reference" in checks["training.band"].message
    assert "fix kl_divergence.value first" in checks["training.band"].message


@pytest.mark.slow
def test_the_scatter_and_manifold_are_shown_beside_the_references():
    import base64

    report = vaelab.check(STUDENTS / "mlp_sigmoid.py", "mlp")  # one file: figures by default, drawn in its process
    assert sorted(report.figures) == ["manifold", "scatter"]
    for png in report.figures.values():
        assert base64.b64decode(png).startswith(b"\x89PNG")
    page = report._repr_html_()
    assert page.count("<img") == 2 and "within the reference band" in page
    assert not vaelab.check(STUDENTS / "mlp_sigmoid.py", "mlp", train=False, isolate=False).figures
