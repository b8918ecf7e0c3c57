"""What practitioners expect: callbacks, TensorBoard with the embedding projector, exported models
that run without vaelab, weights loadable in plain PyTorch, and packaging that says what it needs."""

import ast
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import copy_run, vaelab_cli

import vaelab
from vaelab.runs import load_model, read_metrics

ROOT = Path(__file__).resolve().parent.parent


class Record(vaelab.Callback):
    step_every = 7

    def __init__(self):
        self.steps, self.rows, self.ended = [], [], 0

    def on_step(self, step, values):
        self.steps.append((step, values))

    def on_epoch_end(self, row, run_dir):
        self.rows.append(row)

    def on_train_end(self, run_dir):
        self.ended += 1


@pytest.fixture(scope="module")
def logged(tmp_path_factory):
    """A 2-epoch mlp run on the sample with a recording callback and TensorBoard."""
    record = Record()
    run = vaelab.train(
        model="mlp",
        dataset="mnist-sample",
        epochs=2,
        batch_size=100,
        out=tmp_path_factory.mktemp("tb") / "run",
        progress=False,
        callbacks=[record, vaelab.TensorBoard(step_every=10)],
    )
    return run, record


def test_callbacks_hear_every_nth_step_every_epoch_and_the_end(logged):
    run, record = logged
    assert [s for s, _ in record.steps] == list(range(7, 81, 7))  # 40 steps an epoch, 2 epochs
    assert set(record.steps[0][1]) == {"loss", "recon", "kl", "lr", "beta", "epoch"}
    assert record.steps[0][1]["loss"] == pytest.approx(record.steps[0][1]["recon"] + record.steps[0][1]["kl"], rel=1e-5)
    assert record.rows == read_metrics(run.dir) and record.ended == 1


def test_tensorboard_holds_scalars_images_and_the_projector(logged):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run, _ = logged
    events = EventAccumulator(str(run.dir / "tensorboard"), size_guidance={"scalars": 0, "images": 0})
    events.Reload()
    assert [e.step for e in events.Scalars("step/loss")] == list(range(10, 81, 10))
    assert [e.step for e in events.Scalars("step/lr")] == list(range(10, 81, 10))
    assert len(events.Images("reconstructions (test images above)")) == 2
    rows = read_metrics(run.dir)
    for split in ("train", "test"):  # one tag, two runs: train and test on one chart
        split_events = EventAccumulator(str(run.dir / "tensorboard" / split), size_guidance={"scalars": 0})
        split_events.Reload()
        totals = [e.value for e in split_events.Scalars("epoch/total")]
        assert totals == pytest.approx([r[f"{split}_total"] for r in rows])
    elbo = [e.value for e in split_events.Scalars("epoch/elbo")]
    assert elbo == pytest.approx([r["test_elbo"] for r in rows])
    hparams = next((run.dir / "tensorboard" / "hparams").glob("events.out.tfevents.*")).read_bytes()
    assert b"train/lr" in hparams and b"model/latent_dim" in hparams and b"final/test_elbo" in hparams
    config = (run.dir / "tensorboard" / "projector_config.pbtxt").read_text()
    folder = run.dir / "tensorboard" / re.search(r'tensor_path: "(.*?)/tensors.tsv"', config).group(1)
    codes = np.loadtxt(folder / "tensors.tsv", delimiter="\t")
    assert codes.shape == (1000, 2)  # every test image of the sample, its encoder mean
    np.testing.assert_allclose(codes, run.codes[0], atol=1e-4)
    labels = (folder / "metadata.tsv").read_text().split()
    assert labels == [str(k) for k in run.data.test_y.tolist()] and (folder / "sprite.png").is_file()


def test_a_resumed_run_goes_on_logging_to_tensorboard(logged, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run = shutil.copytree(logged[0].dir, tmp_path / "run")
    vaelab.resume(run, epochs=3, progress=False)  # no callback given: the run's TensorBoard goes on
    events = EventAccumulator(str(run / "tensorboard" / "test"), size_guidance={"scalars": 0})
    events.Reload()
    assert [e.step for e in events.Scalars("epoch/elbo")] == [1, 2, 3]


def wandb_records(path):
    """The records of an offline W&B run file: LevelDB's log format (32 kB blocks of records with a
    7-byte header; FULL, or FIRST, MIDDLE and LAST pieces) after W&B's own 7-byte header."""
    from wandb.proto import wandb_internal_pb2

    data, pos, pending = path.read_bytes(), 7, b""
    while pos + 7 <= len(data):
        if 32768 - pos % 32768 < 7:  # a block's tail too short for a header is padding
            pos += 32768 - pos % 32768
            continue
        length, kind = int.from_bytes(data[pos + 4 : pos + 6], "little"), data[pos + 6]
        chunk, pos = data[pos + 7 : pos + 7 + length], pos + 7 + length
        pending = chunk if kind in (1, 2) else pending + chunk
        if kind in (1, 4):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            yield record


def test_weights_and_biases_offline_and_mlflow_file_store_record_the_run(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # MLflow's file store, kept for such uses
    store = f"file://{tmp_path / 'mlruns'}"
    run = vaelab.train(
        "mlp",
        "mnist-sample",
        epochs=1,
        batch_size=500,
        out=tmp_path / "run",
        progress=False,
        callbacks=[vaelab.WandbCallback(project="test", step_every=4), vaelab.MLflowCallback(tracking_uri=store)],
    )
    vaelab.resume(run, epochs=2, progress=False, callbacks=[vaelab.MLflowCallback(tracking_uri=store)])
    rows = read_metrics(run.dir)
    logged = list(wandb_records(next((run.dir / "wandb").glob("offline-run-*/run-*.wandb"))))
    history = [
        {i.key or "/".join(i.nested_key): json.loads(i.value_json) for i in r.history.item}
        for r in logged
        if r.HasField("history")
    ]
    assert [h["test/elbo"] for h in history if "test/elbo" in h] == pytest.approx([rows[0]["test_elbo"]])
    assert [h["step/loss"] for h in history if "step/loss" in h]  # step scalars every 4 steps
    (start,) = [r.run for r in logged if r.HasField("run")]
    assert {u.key for u in start.config.update} >= {"train/lr", "model/latent_dim", "model/name"}
    import mlflow

    client = mlflow.tracking.MlflowClient(store)
    (found,) = client.search_runs([client.get_experiment_by_name("vaelab").experiment_id])  # one run, resumed
    history = client.get_metric_history(found.info.run_id, "test/elbo")
    assert [m.step for m in history] == [1, 2] and [m.value for m in history] == pytest.approx(
        [r["test_elbo"] for r in rows]
    )
    assert found.data.params["train/batch_size"] == "500"


@pytest.fixture(scope="module")
def cvae(tmp_path_factory, trained_run):
    """A copy of the session's shared cvae run (the exports are written into it), opened as a notebook does."""
    return vaelab.load(copy_run(trained_run("cvae"), tmp_path_factory.mktemp("export") / "cvae"))


def test_onnx_files_give_vaelabs_outputs_for_any_batch(cvae, tmp_path):
    ort = pytest.importorskip("onnxruntime")
    result = vaelab_cli("export", cvae.dir, "--format", "onnx")
    assert result.returncode == 0, result.stderr
    written = [cvae.dir / "export" / name for name in ("decoder.onnx", "encoder.onnx")]
    assert result.stdout.splitlines() == [f"wrote {path}" for path in written]  # each file it wrote, named
    assert sorted((cvae.dir / "export").iterdir()) == written  # one self-contained file per part
    shutil.copy(written[0], tmp_path / "alone.onnx")  # the file alone runs: no side file
    decoder = ort.InferenceSession(str(tmp_path / "alone.onnx"))
    encoder = ort.InferenceSession(str(cvae.dir / "export" / "encoder.onnx"))
    for batch in (1, 7):
        z, y = np.random.default_rng(batch).standard_normal((batch, 2)).astype(np.float32), np.arange(batch) % 10
        with torch.no_grad():
            expected = torch.sigmoid(cvae.model.decode(torch.from_numpy(z), torch.from_numpy(y))).numpy()
        np.testing.assert_allclose(decoder.run(None, {"z": z, "y": y})[0], expected, atol=1e-5)
        x = cvae.data.test_x[:batch].float().numpy() / 255
        mu, logvar = encoder.run(None, {"x": x, "y": y})
        with torch.no_grad():
            want = cvae.model.encode(torch.from_numpy(x), torch.from_numpy(y))
        np.testing.assert_allclose(mu, want[0].numpy(), atol=1e-5)
        np.testing.assert_allclose(logvar, want[1].numpy(), atol=1e-5)


@pytest.mark.slow  # a new process
def test_torchscript_runs_in_a_fresh_process_without_vaelab(cvae, tmp_path):
    paths = cvae.export("torchscript", "decoder")
    z, y = torch.randn(5, 2, generator=torch.Generator().manual_seed(0)), torch.arange(5)
    with torch.no_grad():
        np.save(tmp_path / "want.npy", torch.sigmoid(cvae.model.decode(z, y)).numpy())
    code = (
        "import sys, numpy, torch; d = torch.jit.load(sys.argv[1]); "
        "out = d(torch.randn(5, 2, generator=torch.Generator().manual_seed(0)), torch.arange(5)).detach().numpy(); "
        "assert 'vaelab' not in sys.modules; print(float(abs(out - numpy.load(sys.argv[2])).max()))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code, str(paths[0]), str(tmp_path / "want.npy")],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert float(result.stdout) < 1e-5
    part = torch.jit.load(str(paths[0]))  # the decoder's file carries the decoder's weights only
    assert sum(p.numel() for p in part.parameters()) == sum(p.numel() for p in cvae.model.decoder.parameters())


def test_the_docs_onnx_example_decodes_a_latent_point_in_plain_python(logged, tmp_path):
    pytest.importorskip("onnxruntime")
    (decoder,) = logged[0].export("onnx", "decoder")
    shutil.copy(decoder, tmp_path / "decoder.onnx")  # the file alone
    blocks = re.findall(r"```python\n(.*?)```", (ROOT / "docs" / "plain-pytorch.md").read_text(), re.S)
    example = next(b for b in blocks if "onnxruntime" in b).split("import torch")[0]
    code = example.replace("RUN/export/", "") + "import sys; assert 'vaelab' not in sys.modules; print(images.shape)"
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0 and result.stdout.strip() == "(16, 1, 28, 28)", result.stderr


def test_the_plain_pytorch_recipe_in_the_docs_runs(cvae, tmp_path):
    blocks = re.findall(r"```python\n(.*?)```", (ROOT / "docs" / "plain-pytorch.md").read_text(), re.S)
    recipe = next(b for b in blocks if "load_state_dict" in b).replace("RUN/", f"{cvae.dir}/")
    recipe = recipe.replace(
        "torch.randn(16, model.config.latent_dim)", "torch.randn(16, model.config.latent_dim), torch.arange(16) % 10"
    )
    scope = {}
    exec(recipe, scope)  # noqa: S102 (the documentation's own code)
    assert scope["images"].shape == (16, 1, 28, 28)
    loaded, _ = load_model(cvae.dir)
    assert all(
        torch.equal(a, b)
        for a, b in zip(scope["model"].state_dict().values(), loaded.state_dict().values(), strict=True)
    )


# ---- packaging -------------------------------------------------------------------------------------

PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
IMPORT_NAMES = {"PIL": "pillow", "sklearn": "scikit-learn", "safetensors": "safetensors", "yaml": "pyyaml"}


def declared() -> set[str]:
    specs = PROJECT["dependencies"] + [d for extra in PROJECT["optional-dependencies"].values() for d in extra]
    return {re.split(r"[<>=\[ ;]", d)[0].lower() for d in specs}


def test_every_package_vaelab_imports_is_declared():
    used = set()
    for path in (ROOT / "vaelab").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = (
                [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else [node.module]
                if isinstance(node, ast.ImportFrom) and node.module and not node.level
                else []
            )
            used |= {n.split(".")[0] for n in names}
    third_party = {n for n in used - set(sys.stdlib_module_names) if n != "vaelab"}
    missing = {IMPORT_NAMES.get(n, n).lower() for n in third_party} - declared()
    assert not missing, missing


@pytest.mark.parametrize("name", [n for n in vaelab.__all__ if callable(getattr(vaelab, n, None))])
def test_every_exported_name_has_a_docstring_with_an_example(name):
    doc = getattr(vaelab, name).__doc__ or ""
    assert len(doc.split()) >= 8 and ">>> " in doc, f"vaelab.{name} needs a docstring with an example (>>> ...)"


def test_the_version_is_written_once():
    assert "version" in PROJECT["dynamic"] and "version" not in PROJECT
    assert tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["dynamic"]["version"] == {
        "attr": "vaelab.__version__"
    }
    assert f"## {vaelab.__version__}" in (ROOT / "CHANGELOG.md").read_text()


def test_the_kept_subcommand_help_is_the_parsers_own():
    from vaelab.cli.cached_help import TABLE, render

    kept = json.loads(TABLE.read_text())
    for name, text in render().items():
        assert kept.get(name) == text, f"vaelab {name} --help changed: python -m vaelab.cli.cached_help writes it anew"


@pytest.mark.parametrize("command", ["train", "sweep", "evaluate", "report"])
def test_a_subcommand_help_does_not_wait_for_pytorch(command):
    code = (
        f"import sys; sys.argv = ['vaelab', '{command}', '--help']; import vaelab.__main__ as m; "
        "code = m.main(); print(code, 'torch' in sys.modules)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.stdout.splitlines()[-1] == "0 False" and f"usage: vaelab {command}" in result.stdout


def test_the_source_distribution_holds_what_the_readme_links_to(tmp_path):
    import tarfile

    from setuptools import build_meta

    cwd = os.getcwd()
    os.chdir(ROOT)
    try:
        name = build_meta.build_sdist(str(tmp_path))
    finally:
        os.chdir(cwd)
    with tarfile.open(tmp_path / name) as sdist:
        names = {n.split("/", 1)[1] for n in sdist.getnames() if "/" in n}
    assert {"docs/callbacks.md", "examples/01-mlp-vae.ipynb", "CHANGELOG.md", "vaelab/cli/help.json"} <= names
    assert "vaelab/explorer/static/explorer.js" in names and "vaelab/data/sample/README.md" in names


def test_the_licence_and_the_python_floor_are_stated_once():
    assert PROJECT["license"] == "MIT" and "MIT License" in (ROOT / "LICENSE").read_text()
    floor = PROJECT["requires-python"].removeprefix(">=")
    versions = [
        c.rsplit(":: ", 1)[1] for c in PROJECT["classifiers"] if c.startswith("Programming Language :: Python :: 3.")
    ]
    assert min(versions, key=lambda v: tuple(map(int, v.split(".")))) == floor
    assert sys.version_info >= tuple(map(int, floor.split(".")))


def test_ci_installs_from_the_constraints_file_that_pins_every_dependency():
    pins = dict(
        line.split("==")
        for line in (ROOT / "constraints.txt").read_text().splitlines()
        if line and not line.startswith("#")
    )
    assert {p.lower() for p in pins} >= declared() - {"vaelab"}
    assert pins.get("torch") == "2.13.0"
    ci = (ROOT / ".ci" / "run").read_text()
    assert "-c constraints.txt" in ci


def test_the_help_does_not_wait_for_pytorch():
    code = (
        "import sys, vaelab.cli\ntry:\n    vaelab.cli.main(['--help'])\nexcept SystemExit:\n    pass\n"
        "print('torch' in sys.modules)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and result.stdout.strip().endswith("False"), result.stdout[-500:] + result.stderr


def test_what_vaelab_says_goes_through_logging_and_can_be_quieted_or_routed(tmp_path, capsys, caplog):
    vaelab.train("mlp", "mnist-sample", epochs=1, batch_size=500, out=tmp_path / "a", progress=False, verbose=0)
    assert "epoch 1/1" not in capsys.readouterr().out
    assert logging.getLogger("vaelab").level == logging.INFO  # put back after the call
    vaelab.train("mlp", "mnist-sample", epochs=1, batch_size=500, out=tmp_path / "b", progress=False)
    assert "epoch 1/1" in capsys.readouterr().out
    assert "epoch 1/1" in caplog.text  # a record of logging, which an application's handlers receive too


def test_quiet_on_the_command_line(tmp_path, capsys):
    from vaelab import cli

    argv = ["train", "--model", "mlp", "--dataset", "mnist-sample", "--epochs", "1", "--batch-size", "500"]
    assert cli.main([*argv, "--out", tmp_path / "run", "--no-report", "-q"]) == 0
    out = capsys.readouterr().out
    assert "epoch 1/1" not in out and out.startswith("run folder:")  # the command's result stays


def test_export_leaves_the_onnx_loggers_level_as_it_found_it(tmp_path):
    pytest.importorskip("onnxscript")
    run = vaelab.train("mlp", "mnist-sample", epochs=1, batch_size=500, out=tmp_path / "run", progress=False)
    logging.getLogger("torch.onnx").setLevel(logging.DEBUG)
    run.export("onnx", "decoder")
    assert logging.getLogger("torch.onnx").level == logging.DEBUG
