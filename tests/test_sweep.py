"""`vaelab sweep`: one run per value, and a table holding those runs' own numbers."""

import argparse
import csv
import json

import pytest
from conftest import vaelab_cli

from vaelab.cli.make import add_sweep_parser, swept_setting
from vaelab.config import TrainConfig
from vaelab.errors import VaelabError
from vaelab.files import read_json
from vaelab.runs import read_metrics
from vaelab.sweeps import sweep


@pytest.fixture(scope="module")
def swept(tmp_path_factory):
    out = tmp_path_factory.mktemp("sweep") / "latent"
    cfg = TrainConfig(model="conv", dataset="mnist-sample", epochs=1, batch_size=64)
    return sweep(cfg, {}, "latent_dim", (2, 8), out)


def test_one_run_per_value_with_that_value(swept):
    for value in (2, 8):
        config = read_json(swept / f"latent_dim-{value}" / "config.json")
        assert config["model_config"]["latent_dim"] == value and config["train"]["epochs"] == 1


def test_the_table_holds_each_runs_last_epoch(swept):
    rows = json.loads((swept / "sweep.json").read_text())["rows"]
    assert [r["value"] for r in rows] == [2, 8]
    for row in rows:
        last = read_metrics(swept / row["run"])[-1]
        assert (row["test_recon"], row["test_kl"], row["test_elbo"]) == (
            last["test_recon"],
            last["test_kl"],
            last["test_elbo"],
        )
        assert 0 <= row["active_units"] <= row["value"] and row["iw_bound"] is None
    with open(swept / "sweep.csv") as f:
        table = list(csv.DictReader(f))
    assert [float(r["test_recon"]) for r in table] == pytest.approx([r["test_recon"] for r in rows])
    markdown = (swept / "sweep.md").read_text().splitlines()
    assert markdown[0].startswith("| latent_dim | test recon | test KL") and len(markdown) == 4
    assert f"{rows[1]['test_recon']:,.2f}" in markdown[3]
    assert rows[1]["params"] > rows[0]["params"]  # wider mu/logvar heads and first decoder layer
    assert (swept / "sweep.png").stat().st_size > 10_000


def test_a_finished_sweep_is_kept_and_a_changed_one_refused(swept):
    weights = swept / "latent_dim-2" / "model.safetensors"
    before = weights.stat().st_mtime_ns
    result = vaelab_cli(
        "sweep",
        "--latent-dim",
        "2,8",
        "--model",
        "conv",
        "--dataset",
        "mnist-sample",
        "--epochs",
        "1",
        "--batch-size",
        "64",
        "--out",
        swept,
    )
    assert result.returncode == 0, result.stderr
    assert "is finished; keeping it" in result.stdout and "| 8 |" in result.stdout
    assert weights.stat().st_mtime_ns == before
    with pytest.raises(VaelabError, match="other settings.*--overwrite"):
        sweep(TrainConfig(model="conv", dataset="mnist-sample", epochs=1, lr=0.01), {}, "latent_dim", (2,), swept)


def parse(*argv):
    parser = argparse.ArgumentParser()
    add_sweep_parser(parser.add_subparsers())
    return parser.parse_args(["sweep", *argv])


def test_every_numeric_flag_takes_a_list_and_exactly_one_is_swept():
    args = parse("--beta", "0.5,1,4", "--latent-dim", "16", "--epochs", "2")
    assert swept_setting(args, args.numeric) == ("beta", (0.5, 1.0, 4.0))
    assert args.latent_dim == 16 and args.epochs == 2 and args.lr == 1e-3
    for argv, message in (
        (["--beta", "1,2", "--latent-dim", "2,4"], "varies one setting, but --beta, --latent-dim"),
        (["--epochs", "3"], "e.g. --latent-dim 2,4,8,16,32"),
    ):
        args = parse(*argv)
        with pytest.raises(VaelabError, match=message):
            swept_setting(args, args.numeric)


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--latent-dim", "2,0"], "--latent-dim must be at least 1"),
        (["--beta", "1,1"], "repeats a value"),
        (["--lr", "0.1,x"], "--lr must be a float"),
    ],
)
def test_bad_values_are_refused_by_name(argv, message, capsys):
    with pytest.raises(SystemExit):
        parse(*argv)
    assert message in capsys.readouterr().err


def test_a_wider_latent_reconstructs_better_and_pays_more_kl(tmp_path):
    """The textbook trade-off, on real digits: mlp at latent 2, 8, 32 (3 epochs of batches of 32)."""
    out = sweep(
        TrainConfig(model="mlp", dataset="mnist-sample", epochs=3, batch_size=32),
        {},
        "latent_dim",
        (2, 8, 32),
        tmp_path / "trend",
    )
    rows = json.loads((out / "sweep.json").read_text())["rows"]
    recon, kl = [r["test_recon"] for r in rows], [r["test_kl"] for r in rows]
    assert recon[0] - recon[1] > 20 and recon[1] > recon[2] and kl[0] < kl[1] < kl[2], rows


def test_a_conv_sweep_past_its_dense_width_says_how_to_widen_it(capsys):
    from vaelab.models import make_config
    from vaelab.sweeps import bottleneck_notice

    narrow = [make_config("conv", (1, 28, 28), 10, latent_dim=k) for k in (2, 8, 32)]
    assert "Dense layer has 14 units, fewer than latent size 32" in bottleneck_notice(narrow)
    assert "--dense-dim 64" in bottleneck_notice(narrow)
    wide = [make_config("conv", (1, 28, 28), 10, latent_dim=k, dense_dim=64) for k in (2, 8, 32)]
    assert (
        bottleneck_notice(wide) is None
        and bottleneck_notice([make_config("mlp", (1, 28, 28), 10, latent_dim=32)]) is None
    )


# ---- runs of one shape trained as one batched model -------------------------------------------------------


def sweep_cli(*argv):
    return vaelab_cli("sweep", "--model", "mlp", "--dataset", "mnist-sample", "--epochs", "1", *argv)


@pytest.mark.slow
def test_a_beta_sweep_trains_as_one_model_and_each_run_is_the_run_trained_alone(tmp_path):
    batched = sweep_cli("--beta", "1,4", "--batched", "on", "--out", tmp_path / "batched")
    assert batched.returncode == 0, batched.stderr
    assert "beta-1, beta-4: 2 runs trained as one batched model" in batched.stdout
    alone = sweep_cli("--beta", "1,4", "--batched", "off", "--out", tmp_path / "alone")
    assert "beta-1: trained alone (--batched off)" in alone.stdout
    for run in ("beta-1", "beta-4"):
        got, want = read_metrics(tmp_path / "batched" / run), read_metrics(tmp_path / "alone" / run)
        assert got[-1]["test_elbo"] == pytest.approx(want[-1]["test_elbo"], rel=1e-4)
        for name in ("config.json", "model.safetensors", "checkpoint.safetensors", "recon/epoch_001.png"):
            assert (tmp_path / "batched" / run / name).is_file(), name
    kl = [read_metrics(tmp_path / "batched" / run)[-1]["test_kl"] for run in ("beta-1", "beta-4")]
    assert kl[1] < kl[0]  # each run minimised its own objective
    more = vaelab_cli("train", "--resume", tmp_path / "batched" / "beta-4", "--epochs", "2")  # a run like any
    assert more.returncode == 0 and len(read_metrics(tmp_path / "batched" / "beta-4")) == 2, more.stderr


@pytest.mark.parametrize("batched", ["on", "off"])
def test_a_run_that_diverges_stops_alone_and_the_sweep_says_so(batched, tmp_path):
    result = sweep_cli("--lr", "0.001,1000000", "--batched", batched, "--out", tmp_path / "lr")
    assert result.returncode == 2 and "1 of 2 runs stopped" in result.stderr, result.stderr
    assert "lr-1e+06: the loss became non-finite in epoch 1" in result.stderr
    rows = json.loads((tmp_path / "lr" / "sweep.json").read_text())["rows"]
    assert [r["run"] for r in rows] == ["lr-0.001"] and rows[0]["epochs"] == 1


def test_batched_on_refuses_a_run_that_cannot_share_a_batch(tmp_path):
    cfg = TrainConfig(model="mlp", dataset="mnist-sample", epochs=1, precision="fp16", device="cpu")
    with pytest.raises(VaelabError, match="cannot train in a batch.*--batched auto"):
        sweep(cfg, {}, "seed", (0, 1), tmp_path / "fp16", batched="on")


def test_auto_trains_one_after_another_on_a_cpu_and_a_seed_sweep_gives_a_band(tmp_path):
    """On a CPU a batched step was measured no faster (bench/README.md): auto leaves batching to a GPU."""
    result = sweep_cli("--seed", "0,1", "--device", "cpu", "--out", tmp_path / "seeds")
    assert result.returncode == 0, result.stderr
    assert "seed-0: trained alone (--batched auto batches on a " in result.stdout and "not on cpu)" in result.stdout
    rows, band = (json.loads((tmp_path / "seeds" / "sweep.json").read_text())[k] for k in ("rows", "band"))
    elbos = [r["test_elbo"] for r in rows]
    assert band["test_elbo"]["mean"] == pytest.approx(sum(elbos) / 2) and band["test_elbo"]["sd"] > 0
    assert "Over 2 seeds (mean ± sd): test ELBO" in (tmp_path / "seeds" / "sweep.md").read_text()
