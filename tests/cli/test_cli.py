"""Every CLI subcommand end to end, as a user runs it: through vaelab.cli.main in this process (what
`python -m vaelab` calls), and `vaelab serve` in a process of its own."""

import json
import re
from pathlib import Path

import numpy as np
import pytest
from conftest import vaelab_cli as vaelab
from PIL import Image

METRIC_COLUMNS = {
    "epoch",
    "train_total",
    "train_recon",
    "train_kl",
    "test_total",
    "test_recon",
    "test_kl",
    "test_elbo",
    "seconds",
    "images_per_second",
}


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "run"
    result = vaelab(
        "train", "--model", "conv", "--dataset", "mnist-sample", "--epochs", "2", "--out", out, "--no-progress"
    )
    assert result.returncode == 0, result.stderr
    assert "epoch 2/2" in result.stdout and f"run folder: {out}" in result.stdout
    assert f"report: {out / 'report.html'}" in result.stdout  # made at the end of training
    return out


def test_train_writes_every_file(run_dir):
    for name in (
        "config.json",
        "model.safetensors",
        "checkpoint.safetensors",
        "metrics.jsonl",
        "metrics.csv",
        "recon/epoch_001.png",
        "recon/epoch_002.png",
    ):
        assert (run_dir / name).is_file(), name
    config = json.loads((run_dir / "config.json").read_text())
    assert config["model"] == "conv" and config["train"]["epochs"] == 2
    assert config["command"] and config["versions"]["torch"] and config["device"].startswith("cpu")
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) == 2 and set(rows[0]) == METRIC_COLUMNS
    header = (run_dir / "metrics.csv").read_text().splitlines()[0].split(",")
    assert set(header) == METRIC_COLUMNS


def test_reconstruction_image_holds_8_images_and_8_reconstructions(run_dir):
    image = np.array(Image.open(run_dir / "recon" / "epoch_002.png"))
    # 2 rows x 8 columns of 28-pixel images with 2-pixel gaps, everything scaled by 2
    assert image.shape == (2 * (2 * 30 + 2), 2 * (8 * 30 + 2))


def test_sample_writes_a_grid(run_dir, tmp_path):
    out = tmp_path / "s.png"
    result = vaelab("sample", run_dir, "-n", "16", "--out", out)
    assert result.returncode == 0, result.stderr
    image = np.array(Image.open(out))
    assert image.shape == (2 * (4 * 30 + 2), 2 * (4 * 30 + 2))
    assert 10 < image.mean() < 250  # digits on a black background inside white gaps, not blank


def test_sample_label_on_an_unconditional_model_is_refused(run_dir):
    result = vaelab("sample", run_dir, "--label", "3")
    assert result.returncode == 2
    assert "--label needs a conditional model" in result.stderr


def test_summary_prints_the_spec_counts():
    result = vaelab("summary", "conv")
    assert result.returncode == 0, result.stderr
    assert "encoder parameters: 62,794" in result.stdout
    assert "decoder parameters: 65,089" in result.stdout
    assert re.search(r"decoder +reshape +Unflatten +64x7x7 +0\n", result.stdout), result.stdout


def test_data_lists_the_bundled_sample():
    result = vaelab("data")
    assert result.returncode == 0, result.stderr
    assert "mnist-sample" in result.stdout and "4,000" in result.stdout.replace("4000", "4,000")


@pytest.mark.parametrize(
    "args,message",
    [
        (["--latent-dim", "0"], "--latent-dim must be at least 1"),
        (["--lr", "nan"], "--lr must be a finite number"),
        (["--batch-size", "abc"], "--batch-size must be an int"),
        (["--model", "mlp", "--dense-dim", "16"], "--dense-dim does not apply to model 'mlp'"),
        (["--model", "resnet"], "invalid choice: 'resnet'"),
    ],
)
def test_bad_train_options_are_named(args, message, tmp_path):
    result = vaelab("train", "--dataset", "mnist-sample", "--out", tmp_path / "x", *args)
    assert result.returncode == 2
    assert message in result.stderr
    assert not (tmp_path / "x").exists()


def test_demo_runs_offline_on_the_sample(tmp_path, monkeypatch, capfd):
    """Offline (MNIST's mirrors refuse connections), the first thing said is that MNIST is not
    available, with no download announced before it; then the sample trains."""
    import socket
    from dataclasses import replace

    from vaelab.data.sources import DATASETS

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{s.getsockname()[1]}/"
    monkeypatch.setitem(DATASETS, "mnist", replace(DATASETS["mnist"], mirrors=(closed, closed)))
    result = vaelab("demo", "--out", tmp_path / "demo", "--epochs", "1")
    assert result.returncode == 0, result.stderr
    printed = result.stdout + result.stderr + "".join(capfd.readouterr())
    assert result.stdout.startswith("MNIST is not available here (data set 'mnist' is not on this machine"), printed
    assert "Downloading" not in printed and "mnist-sample" in result.stdout
    assert (tmp_path / "demo" / "model.safetensors").is_file()
    assert (tmp_path / "demo" / "report.html").is_file()


def test_the_demo_estimates_the_whole_training_from_its_first_epoch(capsys):
    from vaelab.demo import Estimate

    Estimate(10).on_epoch_end({"epoch": 1, "seconds": 19.2}, None)
    Estimate(10).on_epoch_end({"epoch": 2, "seconds": 19.2}, None)
    assert capsys.readouterr().out == "  (the 10 epochs take about 3 minutes in all at this pace, then the report)\n"


def test_report_writes_the_page_and_its_figures(run_dir):
    result = vaelab("report", run_dir, "--grid", "31", "--walk", "1:7")
    assert result.returncode == 0, result.stderr
    page = (run_dir / "report.html").read_text()
    for name in ("scatter", "manifold", "walks", "architecture", "curves"):
        assert f"figures/{name}.png" in page and (run_dir / "figures" / f"{name}.png").is_file()


def test_report_refuses_a_class_the_data_does_not_have(run_dir):
    result = vaelab("report", run_dir, "--walk", "1:12")
    assert result.returncode == 2
    assert "12" in result.stderr and "0..9" in result.stderr


def test_compare_prints_the_runs_numbers(run_dir, tmp_path):
    result = vaelab("compare", run_dir, run_dir, "--out", tmp_path / "cmp", "--quality-samples", "0")
    assert result.returncode == 0, result.stderr
    assert "| – | – | – |" in result.stdout  # sample quality skipped, shown blank
    final = json.loads((run_dir / "metrics.jsonl").read_text().splitlines()[-1])
    assert f"{final['test_elbo']:,.2f}" in result.stdout  # the table's own format
    assert (tmp_path / "cmp" / "compare.html").is_file()


# ---- every subcommand, as a user types it ----------------------------------------------------------

RUN_ABOVE = {
    "train": "run_dir",
    "sample": "test_sample_writes_a_grid",
    "summary": "test_summary_prints_the_spec_counts",
    "data": "test_data_lists_the_bundled_sample",
    "demo": "test_demo_runs_offline_on_the_sample",
    "report": "test_report_writes_the_page_and_its_figures",
    "compare": "test_compare_prints_the_runs_numbers",
}
RUN_BELOW = {  # the other subcommands, with what each must print
    "evaluate": (
        ["evaluate", "{run}", "--iw-samples", "3", "--iw-images", "40", "--quality-samples", "0", "--no-progress"],
        "L_3",
    ),
    "sweep": (
        [
            "sweep",
            "--model",
            "mlp",
            "--dataset",
            "mnist-sample",
            "--epochs",
            "1",
            "--batch-size",
            "500",
            "--latent-dim",
            "2,3",
            "--out",
            "{tmp}/sweep",
        ],
        "wrote {tmp}/sweep/sweep.md",
    ),
    "export": (["export", "{run}", "--format", "torchscript", "--out", "{tmp}/export"], "wrote {tmp}/export/encoder"),
    "check": (  # a student's correct file (tests/checking has the rest: mistakes, outputs, folders)
        ["check", str(Path(__file__).parent.parent / "checking" / "students" / "mlp_correct.py"), "--exercise", "mlp"],
        "ok    training.band",
    ),
}


def test_every_subcommand_is_run_end_to_end_by_this_file():
    from vaelab.cli.main import SUBCOMMANDS

    registered = {add.__name__.removeprefix("add_").removesuffix("_parser") for add in SUBCOMMANDS}
    assert registered == set(RUN_ABOVE) | set(RUN_BELOW) | {"serve"}  # serve: test_serve_command_answers below


@pytest.mark.parametrize("name", sorted(RUN_BELOW))
def test_subcommand_runs(name, run_dir, tmp_path):
    argv, printed = RUN_BELOW[name]
    result = vaelab(*(a.format(run=run_dir, tmp=tmp_path) for a in argv))
    assert result.returncode == 0, result.stderr
    assert printed.format(tmp=tmp_path) in result.stdout


@pytest.mark.slow  # a new process that starts a server
def test_serve_command_answers(run_dir):
    import subprocess
    import sys
    import urllib.request

    server = subprocess.Popen(
        [sys.executable, "-m", "vaelab", "serve", str(run_dir), "--port", "0"], stdout=subprocess.PIPE, text=True
    )
    try:
        line = server.stdout.readline()
        assert line.startswith("vaelab explorer: http://127.0.0.1:"), line
        with urllib.request.urlopen(line.split()[2] + "api/info", timeout=30) as response:
            assert json.loads(response.read())["runs"][0]["name"] == run_dir.name
    finally:
        server.terminate()
        server.wait(30)


def test_version():
    from vaelab import __version__

    result = vaelab("--version")
    assert result.returncode == 0 and result.stdout.strip() == f"vaelab {__version__}"


def test_config_repeats_a_run_and_flags_override_it(run_dir, tmp_path):
    result = vaelab(
        "train",
        "--config",
        run_dir / "config.json",
        "--epochs",
        "1",
        "--out",
        tmp_path / "again",
        "--no-report",
        "--no-progress",
    )
    assert result.returncode == 0, result.stderr
    saved, repeated = (json.loads((d / "config.json").read_text()) for d in (run_dir, tmp_path / "again"))
    assert repeated["train"] == {**saved["train"], "epochs": 1}
    assert repeated["model_config"] == saved["model_config"]
    assert repeated["command"][:3] == ["vaelab", "train", "--config"]
    result = vaelab("train", "--config", tmp_path / "nothing.json")
    assert result.returncode == 2 and "nothing.json is missing" in result.stderr
