"""`vaelab check` fails exactly the checks a planted mistake should fail, naming the mistake, and passes
correct solutions written as students write them (tests/checking/students/)."""

import importlib.util
import json
from pathlib import Path

import pytest

import vaelab
from vaelab.checking import EXERCISES

STUDENTS = Path(__file__).resolve().parent / "students"

MISTAKES = {  # file: (exercise, the checks that must fail, words the message must hold)
    "kl_wrong_sign.py": ("mlp", {"kl_divergence.value"}, "wrong sign"),
    "kl_mean_over_dims.py": ("mlp", {"kl_divergence.value"}, "averaged over the latent dimensions instead of summed"),
    "recon_mean_over_pixels.py": ("mlp", {"reconstruction_loss.value"}, "784 times too small"),
    "reparam_logvar_as_sigma.py": ("mlp", {"reparameterize.distribution"}, "uses log σ² as σ"),
    "reparam_no_gradient.py": ("mlp", {"reparameterize.gradient"}, "gradient does not reach μ"),
    "sigmoid_twice.py": ("mlp", {"reconstruction_loss.decoder"}, "applies a sigmoid and the loss applies another"),
    "encoder_outputs_sigma.py": ("mlp", {"encoder.logvar"}, "outputs σ, not log σ²"),
    "hidden_256.py": ("mlp", {"encoder.architecture", "decoder.architecture"}, "403,972"),
    "log_normal_no_2pi.py": ("mc-elbo", {"log_normal_pdf.value"}, "log 2π"),
    "mmd_not_squared.py": ("mmd", {"mmd.value"}, "not its square"),
}
CORRECT = {  # file: exercise
    "mlp_correct.py": "mlp",
    "mlp_sigmoid.py": "mlp",
    "conv_correct.py": "conv",
    "cvae_correct.py": "cvae",
    "mc_elbo_correct.py": "mc-elbo",
    "mmd_correct.py": "mmd",
    "mlp_notebook.ipynb": "mlp",
    "mlp_constructor_args.py": "mlp",
}


def checked(name: str, exercise: str, **kw):
    return vaelab.check(STUDENTS / name, exercise, isolate=False, **{"train": False, **kw})


@pytest.mark.parametrize("name", sorted(MISTAKES))
def test_a_planted_mistake_fails_exactly_its_checks_and_names_it(name):
    exercise, failing, words = MISTAKES[name]
    report = checked(name, exercise)
    assert set(report.failed()) == failing, report.table()
    messages = " ".join(c.message for c in report.checks if c.id in failing)
    assert words in messages, report.table()
    assert not report.passed


@pytest.mark.parametrize("name", sorted(CORRECT))
def test_a_correct_solution_passes_every_check(name):
    report = checked(name, CORRECT[name])
    assert report.failed() == [], report.table()
    assert report.passed and report.score == report.max_score > 0
    required = {p.lower() + ".found" for p in EXERCISES[CORRECT[name]].required}
    assert required <= {c.id for c in report.checks if c.passed}


def test_the_sigmoid_decoder_is_seen_as_such():
    report = checked("mlp_sigmoid.py", "mlp")
    messages = {c.id: c.message for c in report.checks}
    assert "probabilities" in messages["decoder.interface"]
    assert "flat rows" in messages["encoder.interface"]


def student_module(name: str):
    spec = importlib.util.spec_from_file_location(Path(name).stem, STUDENTS / name)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_pieces_given_as_objects_and_names_mapped():
    module = student_module("mlp_correct.py")
    report = vaelab.check(
        exercise="losses",
        kl_divergence=module.kl_divergence,
        reparameterize=module.reparameterize,
        reconstruction_loss=module.reconstruction_loss,
    )
    assert report.passed, report.table()
    renamed = {"MyKL": module.kl_divergence, "reparameterize": module.reparameterize}
    report = vaelab.check(renamed, "losses", names={"kl_divergence": "MyKL"}, train=False)
    assert report.failed() == ["reconstruction_loss.found"], report.table()
    assert "no reconstruction_loss found" in report.table()


def test_a_module_by_name_or_as_an_object(monkeypatch):
    monkeypatch.syspath_prepend(str(STUDENTS))
    assert vaelab.check("mmd_correct", "mmd").passed
    report = vaelab.check(student_module("mmd_not_squared.py"), "mmd")
    assert report.failed() == ["mmd.value"]
    with pytest.raises(vaelab.VaelabError, match="nothere.py does not exist"):
        vaelab.check("nothere.py", "mmd")


def test_the_notebook_is_run_for_its_definitions_only():
    """Its last cell loops for ever: a check that ran it would never return."""
    report = checked("mlp_notebook.ipynb", "mlp")
    assert "encoder.found" in {c.id for c in report.checks if c.passed}


def test_a_wrong_exercise_name_is_one_clear_error():
    with pytest.raises(vaelab.VaelabError, match="unknown exercise 'vae'; choose one of: mlp"):
        vaelab.check(STUDENTS / "mlp_correct.py", "vae")


def test_a_rubric_chooses_the_checks_and_their_points(tmp_path):
    rubric = tmp_path / "rubric.toml"
    rubric.write_text('[points]\nkl_divergence = 4\n"reparameterize.distribution" = 2\n')
    report = checked("kl_wrong_sign.py", "mlp", rubric=rubric)
    assert {c.id for c in report.checks} == {
        "kl_divergence.found",
        "kl_divergence.value",
        "kl_divergence.edges",
        "kl_divergence.gradient",
        "reparameterize.distribution",
    }
    assert report.max_score == 6 and report.score == 5  # 4 shared by the KL's four checks, one of them failed
    (tmp_path / "rubric.json").write_text(json.dumps({"points": {"kl_divergence": "many"}}))
    with pytest.raises(vaelab.VaelabError, match="must map check ids to points"):
        checked("kl_wrong_sign.py", "mlp", rubric=tmp_path / "rubric.json")


def test_with_a_rubric_a_submission_that_crashed_is_marked_out_of_the_same_total():
    from vaelab.checking import Check, Report
    from vaelab.checking.results import apply_rubric

    crashed = Report("crashes.py", "mlp", [Check("submission.runs", "error", "crashed (signal SIGSEGV)")])
    rubric = {"kl_divergence": 2.0, "training.band": 3.0}
    marked = apply_rubric(crashed, rubric)
    assert marked.max_score == 5 and marked.score == 0
    assert [c.id for c in marked.checks] == ["submission.runs", "kl_divergence", "training.band"]
    assert not marked.passed
