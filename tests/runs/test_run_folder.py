"""A run folder is never left half-written, has one writer at a time, and only loads what fits.

Kills land at every file-system step of an epoch's commit (a child process SIGKILLs itself right
after its k-th synced write, rename or removal), and at chosen moments of real training processes;
each time the folder reads as the epoch before or the epoch after, never a mix, and a resume ends
bit-identical to an uninterrupted run. Tampered files are refused before anything reaches the
model, the optimizer or a random generator.
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import run_vaelab, vaelab_cli
from safetensors.torch import load_file, save_file

from vaelab import cli, runs
from vaelab.config import TrainConfig
from vaelab.errors import CheckpointError, VaelabError
from vaelab.evaluation import evaluate_run
from vaelab.exports import export_run
from vaelab.report import make_report
from vaelab.runs import RunInUse, RunLock, journal
from vaelab.training import TensorBoard, resume, train

SETTINGS = dict(model="mlp", dataset="mnist-sample", batch_size=500, seed=7)  # 8 steps an epoch
TRAIN = [
    "train",
    "--model",
    "mlp",
    "--dataset",
    "mnist-sample",
    "--batch-size",
    "500",
    "--seed",
    "7",
    "--no-progress",
    "--no-report",
]
EPOCH_FILES = (runs.CHECKPOINT, runs.WEIGHTS, runs.METRICS, runs.METRICS_CSV, "recon/epoch_002.png", runs.CONFIG)


@pytest.fixture(scope="module")
def straight(tmp_path_factory) -> Path:
    """Two epochs without a stop: what every interrupted run must end as."""
    return train(TrainConfig(**SETTINGS, epochs=2), out=tmp_path_factory.mktemp("a") / "run", progress=False)


@pytest.fixture(scope="module")
def first_epoch(tmp_path_factory) -> Path:
    """The same run stopped (cleanly) after its first epoch."""
    return train(TrainConfig(**SETTINGS, epochs=1), out=tmp_path_factory.mktemp("b") / "run", progress=False)


def copy(run: Path, to: Path) -> Path:
    shutil.copytree(run, to, ignore=shutil.ignore_patterns(".lock"))
    return to


def snapshot(run: Path) -> dict:
    """{relative path: bytes} of every file of the run but its lock file."""
    return {
        str(p.relative_to(run)): p.read_bytes() for p in sorted(run.rglob("*")) if p.is_file() and p.name != ".lock"
    }


def losses(run: Path) -> list:
    return [{k: v for k, v in r.items() if k not in ("seconds", "images_per_second")} for r in runs.read_metrics(run)]


def same_weights(a: Path, b: Path) -> bool:
    wa, wb = load_file(a / runs.WEIGHTS), load_file(b / runs.WEIGHTS)
    return wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)


# ---- an epoch's files: all or none, whatever the moment of the kill ---------------------------------


def commit_killed_at(run: Path, files: dict, k: int) -> bool:
    """journal.commit(run, files) in a forked child that SIGKILLs itself right after its k-th
    file-system step (fsync, rename, unlink, rmdir); True when the commit finished before step k."""
    pid = os.fork()
    if pid == 0:  # the child: real files, a real kill
        try:
            steps = [0]

            def counted(call):
                def step(*args, **kwargs):
                    result = call(*args, **kwargs)
                    steps[0] += 1
                    if steps[0] == k:
                        os.kill(os.getpid(), signal.SIGKILL)
                    return result

                return step

            for name in ("fsync", "replace", "unlink", "rmdir"):
                setattr(os, name, counted(getattr(os, name)))
            journal.commit(run, files, runs.EPOCH_FILES)
            os._exit(0)
        except BaseException:
            os._exit(1)
    _, status = os.waitpid(pid, 0)
    if os.WIFSIGNALED(status):
        assert os.WTERMSIG(status) == signal.SIGKILL
        return False
    assert os.WEXITSTATUS(status) == 0
    return True


def test_a_kill_between_any_two_files_of_an_epoch_leaves_one_whole_epoch(straight, first_epoch, tmp_path):
    files = {name: (straight / name).read_bytes() for name in EPOCH_FILES}  # epoch 2, as `resume --epochs 2` commits it
    before = snapshot(first_epoch)
    after = {**before, **files}
    outcomes = []
    for k in range(1, 100):
        run = copy(first_epoch, tmp_path / f"k{k}")
        if commit_killed_at(run, files, k):
            assert snapshot(run) == after  # nothing was left to kill
            break
        decided = (run / journal.STAGE / journal.MANIFEST).is_file()
        if k == 3:  # killed while the new files were being staged: kept for a resume below
            shutil.copytree(run, tmp_path / "staging")
        runs.read_metrics(run)  # a reader finishes a decided commit, or drops an undecided one
        state = snapshot(run)
        assert state in (before, after), f"a mix of two epochs after a kill at step {k}"
        assert state == after or not decided
        assert not (run / journal.STAGE).exists()
        outcomes.append(state == after)
        shutil.rmtree(run)
    print(
        f"{len(outcomes)} kills: {outcomes.count(False)} left the epoch before, {outcomes.count(True)} the epoch after"
    )
    assert len(outcomes) >= 14 and outcomes.count(False) >= 5 and outcomes.count(True) >= 5, outcomes
    run = tmp_path / "staging"
    resume(run, epochs=2, progress=False)
    assert same_weights(straight, run) and losses(straight) == losses(run)
    a, b = load_file(run / runs.CHECKPOINT), load_file(straight / runs.CHECKPOINT)  # Adam, generators, position
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_resume_completes_a_commit_a_kill_cut_short(straight, first_epoch, tmp_path):
    files = {name: (straight / name).read_bytes() for name in EPOCH_FILES}
    run = copy(first_epoch, tmp_path / "run")
    k = 1
    while not (run / journal.STAGE / journal.MANIFEST).is_file():  # the first kill after the commit point
        shutil.rmtree(run)
        copy(first_epoch, run)
        assert not commit_killed_at(run, files, k)
        k += 1
    assert resume(run, epochs=2, progress=False) == run  # finishes the commit: epoch 2 is done
    assert snapshot(run) == {**snapshot(first_epoch), **files}
    result = vaelab_cli("train", "--resume", run, "--epochs", "2", "--no-progress", "--no-report")
    assert result.returncode == 0 and "already trained its 2 epochs; nothing to do" in result.stdout, result.stderr


def wait_for(path: Path, process: subprocess.Popen, timeout: float = 300, ready=Path.exists) -> bool:
    """Whether `path` appeared (or `ready(path)` came true) while `process` ran."""
    deadline = time.monotonic() + timeout
    while not ready(path):
        if process.poll() is not None:
            return False
        assert time.monotonic() < deadline
        time.sleep(0.001)
    return True


@pytest.fixture(scope="module")
def straight6(tmp_path_factory) -> Path:
    return train(TrainConfig(**SETTINGS, epochs=6), out=tmp_path_factory.mktemp("b") / "run", progress=False)


@pytest.mark.slow  # a real training process, killed
@pytest.mark.parametrize("moment", [f"{journal.STAGE}/1", f"{journal.STAGE}/4"])
def test_kill_9_of_training_as_an_epoch_is_written_then_resume(moment, straight6, tmp_path):
    """Training is killed the moment an epoch's weights (.commit/1) or reconstructions (.commit/4)
    are staged, and a resume ends as the straight run. Six epochs give six such moments, so a
    busy machine that lets one pass unseen still meets the next."""
    run = tmp_path / "run"
    process = subprocess.Popen(
        [sys.executable, "-m", "vaelab", *TRAIN, "--epochs", "6", "--out", str(run)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert wait_for(run / moment, process), "the moment never came"
        process.kill()
    finally:
        process.communicate(timeout=120)
    rows = runs.read_metrics(run)  # whole epochs only
    assert [r["epoch"] for r in rows] == list(range(1, len(rows) + 1)) and len(rows) < 6
    if rows:
        resume(run, progress=False)
    else:
        assert not (run / runs.CHECKPOINT).exists()
        train(TrainConfig(**SETTINGS, epochs=6), out=run, overwrite=True, progress=False)
    assert same_weights(straight6, run) and losses(straight6) == losses(run)


@pytest.mark.slow  # a real training process, killed
def test_a_second_writer_is_refused_while_the_first_trains(tmp_path):
    run = tmp_path / "run"
    process = subprocess.Popen(
        [sys.executable, "-m", "vaelab", *TRAIN, "--epochs", "10000", "--out", str(run)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert wait_for(run / runs.METRICS, process)  # training, and holding the run
        second = vaelab_cli("train", "--resume", run, "--no-progress")
        assert second.returncode == 2 and "being written by another vaelab process (pid" in second.stderr
        assert f"pid {process.pid}" in second.stderr and "Traceback" not in second.stderr
        (run / ".lock").unlink()  # the lock is the folder's, not this file's
        third = vaelab_cli("train", "--resume", run, "--no-progress")
        assert third.returncode == 2 and "being written by another vaelab process" in third.stderr, third.stderr
        assert process.poll() is None  # the first writer trains on, alone
    finally:
        process.kill()
        process.communicate(timeout=120)


# ---- one writer ------------------------------------------------------------------------------------


def test_a_second_writer_is_refused_and_a_killed_writer_frees_the_folder(first_epoch, tmp_path):
    run = copy(first_epoch, tmp_path / "run")
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from vaelab.runs import RunLock\n"
            "with RunLock(sys.argv[1]): print('held', flush=True); time.sleep(600)",
            str(run),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout.readline() == "held\n"
    with pytest.raises(RunInUse, match=f"pid {holder.pid}"):
        resume(run, epochs=2, progress=False)
    with pytest.raises(RunInUse, match="being written by another vaelab process"):
        train(TrainConfig(**SETTINGS, epochs=1), out=run, overwrite=True, progress=False)
    assert snapshot(run) == snapshot(first_epoch)  # the refused writers touched nothing
    holder.kill()
    holder.wait(30)
    with RunLock(run):  # the kernel let go of the dead holder's lock
        pass


@pytest.mark.slow  # several processes, stopped by signals
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGKILL])
def test_stopping_the_launcher_stops_every_worker(signum, tmp_path):
    """`vaelab train --nproc 2`: SIGTERM is passed on (each worker writes its checkpoint); after
    kill -9 the kernel tells the torch launcher, which stops the workers. Either way no process is
    left writing the folder."""
    run = tmp_path / "run"
    job = subprocess.Popen(
        [sys.executable, "-m", "vaelab", *TRAIN, "--epochs", "100", "--nproc", "2", "--out", str(run)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert wait_for(run / runs.CHECKPOINT, job)  # both ranks are training
    job.send_signal(signum)
    _, err = job.communicate(timeout=120)  # returns once every process holding its stderr has ended
    if signum == signal.SIGTERM:
        assert job.returncode == 128 + signum and "Traceback" not in err, err
        assert err.count("stopped by SIGTERM") == 1 and "checkpoint written" in err, err
    with RunLock(run):  # no worker holds the run any more ...
        state = snapshot(run)
        time.sleep(1)
        assert snapshot(run) == state  # ... or writes it
    rows = runs.read_metrics(run)
    assert rows and [r["epoch"] for r in rows] == list(range(1, len(rows) + 1))


def test_links_planted_in_a_shared_run_folder_are_never_written_through(first_epoch, tmp_path):
    run = copy(first_epoch, tmp_path / "run")
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    (run / ".lock").symlink_to(victim)
    with pytest.raises(VaelabError, match="symbolic link is in the way"):
        resume(run, epochs=2, progress=False)
    (run / ".lock").unlink()
    (run / ".metrics.jsonl.tmp").symlink_to(victim)
    with pytest.raises(VaelabError, match="symbolic link is in the way"):
        runs.append_metrics(run, {**runs.read_metrics(run)[0], "epoch": 2})
    assert victim.read_text() == "keep me" and [r["epoch"] for r in runs.read_metrics(run)] == [1]


WRITERS = {  # what writes into a run folder, given the run's folder
    "export": lambda run: export_run(run, "torchscript", "decoder"),
    "report": lambda run: make_report(run, grid=4),
    "samples": lambda run: cli.main(["sample", str(run), "-n", "4"]),
    "an epoch": lambda run: resume(run, epochs=2, progress=False),
    "tensorboard": lambda run: resume(run, epochs=2, progress=False, callbacks=[TensorBoard()]),
    "evaluation": lambda run: evaluate_run(run, iw_samples=2, iw_images=10, quality_samples=0),
}
FILE_LINKS = {
    "export": "export/decoder.pt",
    "report": "report.html",
    "samples": "samples.png",
    "evaluation": "eval.json",
}
FOLDER_LINKS = {"export": "export", "report": "figures", "an epoch": "recon", "tensorboard": "tensorboard"}


@pytest.mark.parametrize("writer", sorted(FILE_LINKS))
def test_a_link_planted_where_a_file_goes_is_replaced_not_written_through(writer, first_epoch, tmp_path):
    run = copy(first_epoch, tmp_path / "run")
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    (run / FILE_LINKS[writer]).parent.mkdir(exist_ok=True)
    (run / FILE_LINKS[writer]).symlink_to(victim)
    WRITERS[writer](run)
    assert victim.read_text() == "keep me"
    assert not (run / FILE_LINKS[writer]).is_symlink() and (run / FILE_LINKS[writer]).stat().st_size > 0


@pytest.mark.parametrize("writer", sorted(FOLDER_LINKS))
def test_a_folder_of_the_run_that_is_a_link_is_refused(writer, first_epoch, tmp_path, capsys):
    run = copy(first_epoch, tmp_path / "run")
    victim = tmp_path / "victim"
    victim.mkdir()
    shutil.rmtree(run / FOLDER_LINKS[writer], ignore_errors=True)
    (run / FOLDER_LINKS[writer]).symlink_to(victim, target_is_directory=True)
    with pytest.raises(VaelabError, match=f"{FOLDER_LINKS[writer]} is a symbolic link, not a folder of the run"):
        WRITERS[writer](run)
    assert list(victim.iterdir()) == []


# ---- --resume and --overwrite ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "flags",
    [
        ["--beta", "4"],
        ["--model", "conv"],
        ["--lat", "8"],
        ["--batch-size", "128"],
        ["--out", "elsewhere"],
        ["--overwrite"],
        ["--seed=3", "--kl-warmup", "1"],
    ],
)
def test_resume_refuses_every_flag_it_would_ignore(flags, first_epoch, capsys):
    assert cli.main(["train", "--resume", str(first_epoch), *flags, "--epochs", "2"]) == 2
    err = capsys.readouterr().err
    named = [f.split("=")[0] for f in flags if f.startswith("--")]
    assert err.startswith("vaelab: error: --resume continues a run with the settings saved in it")
    assert all(n.replace("--lat", "--latent-dim") in err for n in named), err
    assert "only --epochs, --lr, --clip-grad, --speed may change" in err


def test_a_new_lr_reaches_config_json_only_with_an_epoch_that_finishes(first_epoch, tmp_path):
    run = copy(first_epoch, tmp_path / "run")
    saved = (run / runs.CONFIG).read_bytes()
    with pytest.raises(VaelabError, match=r"non-finite in epoch 2 .*last good checkpoint \(end of epoch 1\)"):
        resume(run, epochs=2, lr=1e30, progress=False)
    assert (run / runs.CONFIG).read_bytes() == saved  # a plain resume does not diverge again
    resume(run, epochs=2, lr=5e-4, progress=False)
    assert json.loads((run / runs.CONFIG).read_text())["train"]["lr"] == 5e-4
    assert [r["epoch"] for r in runs.read_metrics(run)] == [1, 2]


def test_a_failed_overwrite_keeps_the_finished_run(first_epoch, tmp_path):
    run = copy(first_epoch, tmp_path / "run")
    before = snapshot(run)
    with pytest.raises(VaelabError, match="batch_size=5000 is larger than the 4000 training images"):
        train(TrainConfig(**{**SETTINGS, "batch_size": 5000}, epochs=1), out=run, overwrite=True, progress=False)
    assert snapshot(run) == before
    (run / "notes.txt").write_text("mine")
    with pytest.raises(VaelabError, match="also holds notes.txt, which vaelab did not write"):
        train(TrainConfig(**SETTINGS, epochs=1), out=run, overwrite=True, progress=False)
    assert (run / "notes.txt").read_text() == "mine"


@pytest.mark.slow  # a real training process, killed
def test_an_overwrite_removes_the_old_run_before_writing_the_new(first_epoch, tmp_path):
    run = copy(first_epoch, tmp_path / "run")
    (run / "figures").mkdir()
    (run / "figures" / "old.png").write_bytes(b"old")
    (run / runs.EVAL).write_text("{}")
    process = subprocess.Popen(
        [sys.executable, "-m", "vaelab", *TRAIN, "--epochs", "1", "--out", str(run), "--overwrite", "--seed", "8"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )

    def new_config(path):
        try:
            return json.loads(path.read_text())["train"]["seed"] == 8
        except (OSError, ValueError):
            return False

    assert wait_for(run / runs.CONFIG, process, ready=new_config)  # the old files are gone by now
    process.kill()
    process.communicate(timeout=60)
    assert not (run / runs.CHECKPOINT).exists() and not (run / "figures").exists() and not (run / runs.EVAL).exists()
    assert not (run / runs.METRICS).exists()
    with pytest.raises(VaelabError, match="has no checkpoint yet"):  # never the old checkpoint under new settings
        resume(run, progress=False)


def test_overwrite_refuses_a_folder_vaelab_never_wrote_even_with_run_file_names(tmp_path):
    mine = tmp_path / "mine"
    (mine / "figures").mkdir(parents=True)
    (mine / "figures" / "holiday.png").write_bytes(b"a photo")
    (mine / "config.json").write_text('{"theme": "dark"}')
    (mine / "report.html").write_text("<p>my report</p>")
    with pytest.raises(VaelabError, match="holds no config.json that vaelab wrote"):
        train(TrainConfig(**SETTINGS, epochs=1), out=mine, overwrite=True, progress=False)
    assert (mine / "figures" / "holiday.png").read_bytes() == b"a photo" and (mine / "report.html").is_file()


@pytest.mark.parametrize("planted", ["figures/mine/holiday.png", "export/notes.txt", "recon/best.png"])
def test_overwrite_refuses_a_run_holding_files_of_yours_in_its_folders(planted, first_epoch, tmp_path):
    """A file of yours inside a folder of a real run (where vaelab writes only its own names) is not
    vaelab's to delete: the overwrite is refused, naming it, and nothing is removed."""
    run = copy(first_epoch, tmp_path / "run")
    (run / planted).parent.mkdir(parents=True, exist_ok=True)
    (run / planted).write_bytes(b"mine")
    before = snapshot(run)
    with pytest.raises(VaelabError, match=f"also holds {Path(planted).parts[0]}/{Path(planted).parts[1]}, which"):
        train(TrainConfig(**SETTINGS, epochs=1), out=run, overwrite=True, progress=False)
    assert snapshot(run) == before


def test_overwrite_replaces_a_run_trained_with_tensorboard_and_exported(first_epoch, tmp_path):
    run = copy(first_epoch, tmp_path / "run")
    (run / runs.TENSORBOARD).mkdir()
    (run / runs.TENSORBOARD / "events.out.tfevents.1").write_bytes(b"events")
    (run / runs.EXPORT).mkdir()
    (run / runs.EXPORT / "decoder.onnx").write_bytes(b"onnx")
    train(TrainConfig(**{**SETTINGS, "seed": 9}, epochs=1), out=run, overwrite=True, progress=False)
    assert not (run / runs.TENSORBOARD).exists() and not (run / runs.EXPORT).exists()
    assert json.loads((run / runs.CONFIG).read_text())["train"]["seed"] == 9


# ---- files that do not fit the model are refused before use ----------------------------------------


def rewrite(path: Path, change) -> None:
    tensors = load_file(path)
    with open(path, "rb") as f:
        header = json.loads(f.read(int.from_bytes(f.read(8), "little")))
    change(tensors)
    save_file(tensors, path, metadata=header["__metadata__"])


def set_position(position):
    def change(tensors):
        meta = json.loads(bytes(tensors["meta.json"].tolist()))
        meta["position"] = position
        tensors["meta.json"] = torch.tensor(list(json.dumps(meta).encode()), dtype=torch.uint8)

    return change


TAMPERED = {  # checkpoint.safetensors changes -> what the refusal says
    "adam moment of 3 values": (
        lambda t: t.update({"optim.0.exp_avg": torch.zeros(3)}),
        "optim.0.exp_avg is torch.float32 [3]",
    ),
    "adam moment in float64": (lambda t: t.update({"optim.1.exp_avg_sq": t["optim.1.exp_avg_sq"].double()}), "float64"),
    "adam state missing": (lambda t: t.pop("optim.2.step"), "lacks optim.2.step"),
    "adam state for a 9th parameter": (
        lambda t: t.update({"optim.99.step": torch.tensor(1.0)}),
        "unexpected tensor optim.99.step",
    ),
    "adam index not a number": (
        lambda t: t.update({"optim.x.step": torch.tensor(1.0)}),
        "unexpected tensor optim.x.step",
    ),
    "negative second moment": (lambda t: t["optim.0.exp_avg_sq"].fill_(-1), "impossible Adam state"),
    "step zero": (lambda t: t["optim.3.step"].fill_(0), "impossible Adam state"),
    "weight of another shape": (
        lambda t: t.update({"model.encoder.mu.bias": torch.zeros(5)}),
        "model needs torch.float32 [2]",
    ),
    "weight missing": (lambda t: t.pop("model.decoder.out.weight"), "lacks decoder.out.weight"),
    "NaN weight": (lambda t: t["model.encoder.mu.weight"].fill_(float("nan")), "NaN or infinite"),
    "rng state too short": (
        lambda t: t.update({"rng.torch": t["rng.torch"][:100]}),
        "rng.torch is not a generator state",
    ),
    "rng state garbage": (
        lambda t: t.update({"rng.order": torch.randint(0, 255, t["rng.order"].shape, dtype=torch.uint8)}),
        "rng.order is not a generator state",
    ),
    "rng state missing": (lambda t: t.pop("rng.order"), "lacks the random generator state rng.order"),
    "no meta.json": (lambda t: t.pop("meta.json"), "lacks a readable meta.json"),
    "meta.json not JSON": (
        lambda t: t.update({"meta.json": torch.tensor([1, 2, 3], dtype=torch.uint8)}),
        "lacks a readable meta.json",
    ),
    "step past the epoch": (
        set_position({"epoch": 1, "step": 99, "sums": [0, 0, 0], "seconds": 1.0}),
        "step from 0 to 7",
    ),
    "negative seconds": (set_position({"epoch": 1, "step": 3, "sums": [1, 2, 3], "seconds": -1e9}), "seconds >= 0"),
    "epoch far ahead": (
        set_position({"epoch": 10**9, "step": 0, "sums": [0, 0, 0], "seconds": 0}),
        "past the 2 epochs",
    ),
    "sums not numbers": (set_position({"epoch": 1, "step": 3, "sums": ["a", 0, 0], "seconds": 0}), "three finite sums"),
    "position not an object": (set_position([1, 2]), "not one training can be at"),
    "adam step of 1e30": (lambda t: t["optim.3.step"].fill_(1e30), "Adam has taken 1e+30 steps"),
    "meta.json repeats a key": (
        lambda t: t.update({"meta.json": torch.tensor(list(repeat_key(t["meta.json"])), dtype=torch.uint8)}),
        "lacks a readable meta.json",
    ),
}


def repeat_key(meta_json: torch.Tensor) -> bytes:
    """meta.json with its "position" given twice, the second one past the run's end."""
    meta = json.loads(bytes(meta_json.tolist()))
    text = json.dumps(meta)
    return (text[:-1] + ', "position": ' + json.dumps({**meta["position"], "epoch": 99}) + "}").encode()


@pytest.fixture(scope="module")
def tampered(first_epoch, tmp_path_factory):
    """name -> a copy of the first epoch's run with its checkpoint changed so."""
    base = tmp_path_factory.mktemp("tampered")
    out = {}
    for name, (change, _) in TAMPERED.items():
        run = copy(first_epoch, base / name.replace(" ", "-"))
        rewrite(run / runs.CHECKPOINT, change)
        out[name] = run
    return out


@pytest.mark.parametrize("name", list(TAMPERED))
def test_a_tampered_checkpoint_is_refused_before_use(name, tampered):
    with pytest.raises(VaelabError) as e:
        resume(tampered[name], epochs=2, progress=False)
    assert TAMPERED[name][1] in str(e.value), str(e.value)
    assert [r["epoch"] for r in runs.read_metrics(tampered[name])] == [1]  # nothing trained, nothing written


def test_a_tampered_checkpoint_never_crashes_the_resume_command(tampered):
    # a process of its own: the crash (status 139) this guards against would otherwise end the test session
    result = run_vaelab("train", "--resume", tampered["adam moment of 3 values"], "--epochs", "2", "--no-progress")
    assert result.returncode == 2, result  # not 139: the fused Adam kernel never saw the wrong shape
    assert result.stderr.startswith("vaelab: error:") and "optim.0.exp_avg" in result.stderr


def edit_config(run: Path, change) -> None:
    config = json.loads((run / runs.CONFIG).read_text())
    change(config)
    (run / runs.CONFIG).write_text(json.dumps(config))


CONFIG_EDITS = {
    "negative batch size": (lambda c: c["train"].update(batch_size=-128), "--batch-size must be at least 1"),
    "batch size as text": (lambda c: c["train"].update(batch_size="128"), "--batch-size must be a whole number"),
    "huge latent": (lambda c: c["model_config"].update(latent_dim=10**8), "--latent-dim must be at most 4096"),
    "latent as text": (lambda c: c["model_config"].update(latent_dim="2"), "--latent-dim must be a whole number"),
    "unknown model": (lambda c: c.update(model="resnet"), "unknown model 'resnet'"),
    "model config not an object": (lambda c: c.update(model_config=[1]), '"model_config" must be a JSON object'),
    "train missing": (lambda c: c.pop("train"), '"train" must be a JSON object'),
    "classes not names": (lambda c: c["data"].update(classes=[1, 2]), '"data.classes" must be a list'),
    "seed too large": (lambda c: c["train"].update(seed=10**23), "--seed must be from 0 to"),
    "unknown objective": (lambda c: c["train"].update(objective="gan"), "--objective must be one of elbo, mmd"),
    "lr not finite": (lambda c: c["train"].update(lr=float("inf")), "--lr must be a finite number"),
    "not an object": (lambda c: c.clear() or c.update({"x": None}), '"model" must be a model name'),
    "unknown setting": (lambda c: c["train"].update(epoch=3), "holds 'epoch', a setting this vaelab does not know"),
    "settings as a list": (lambda c: c.update(train=[1, 2]), '"train" must be a JSON object'),
    "endless KL warm-up": (lambda c: c["train"].update(kl_warmup=1e308), "--kl-warmup must be at most 100000"),
    "model as a list": (lambda c: c.update(model=["mlp"]), '"model" must be a model name'),
    "a field vaelab never writes": (lambda c: c.update(notes="mine"), '"notes" is a field vaelab never writes'),
    "own model without its classes": (
        lambda c: c.update(model="custom"),
        '"custom" must name the classes of your own model',
    ),
    "own model's class not an import path": (
        lambda c: c.update(model="custom", custom={"model_class": "evil", "config_class": "x:C"}),
        '"custom.model_class" must be an import path module:ClassName',
    ),
    "classes named on a built-in model": (
        lambda c: c.update(custom={"model_class": "evil:M", "config_class": "evil:C"}),
        "names classes of your own model, but the run's model is 'mlp'",
    ),
    "image shape not the model's": (
        lambda c: c["data"].update(image_shape=[1, 28, 29]),
        "is [1, 28, 29], but the model's input_shape is [1, 28, 28]",
    ),
    "fewer classes than the model's": (
        lambda c: c["model_config"].update(num_classes=3),
        "names 10 classes, but the model is conditional on 3",
    ),
}


def test_a_config_or_checkpoint_header_repeating_a_key_is_refused(first_epoch, tmp_path, capsys):
    run = copy(first_epoch, tmp_path / "run")
    text = (run / runs.CONFIG).read_text().rstrip()
    (run / runs.CONFIG).write_text(text[:-1] + ', "model": "conv"}')  # plain JSON would take the last
    assert cli.main(["sample", str(run), "-n", "4"]) == 2
    assert "'model' appears more than once" in capsys.readouterr().err
    copy(first_epoch, run.with_name("run2"))
    path = run.with_name("run2") / runs.CHECKPOINT
    data = path.read_bytes()
    size = int.from_bytes(data[:8], "little")
    header = json.loads(data[8 : 8 + size])
    name = next(k for k in header if k.startswith("optim."))  # a tensor given twice: a map keeps the last
    text = json.dumps(header)[:-1] + f', "{name}": ' + json.dumps(header[name]) + "}"
    text += " " * (-len(text) % 8)
    path.write_bytes(len(text).to_bytes(8, "little") + text.encode() + data[8 + size :])
    with pytest.raises(CheckpointError, match="appears more than once"):
        resume(run.with_name("run2"), epochs=2, progress=False)


def test_a_config_whose_data_are_not_the_data_sets_is_named(first_epoch, tmp_path):
    run = copy(first_epoch, tmp_path / "run")
    edit_config(run, lambda c: c["data"].update(classes=["a", "b", "c"]))  # the report would name 3 of 10 classes
    with pytest.raises(VaelabError, match=r"data have classes \['a', 'b', 'c'\].*edited or the data set changed"):
        print(runs.open_run(run).data)


@pytest.mark.parametrize("name", list(CONFIG_EDITS))
def test_a_hand_edited_config_is_named_by_field(name, first_epoch, tmp_path, capsys):
    run = copy(first_epoch, tmp_path / "run")
    edit_config(run, CONFIG_EDITS[name][0])
    for command in (["train", "--resume", str(run), "--epochs", "2"], ["sample", str(run), "-n", "4"]):
        assert cli.main(command) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"vaelab: error: {run / runs.CONFIG}") and CONFIG_EDITS[name][1] in err, err


@pytest.mark.parametrize(
    "line,message",
    [
        ('{"epoch": 1, "train_total": 5', "line that is not JSON"),
        ("[1, 2]", "line 2 is not the row of an epoch after 1"),
        ('{"epoch": 1, "test_elbo": 3}', "line 2 is not the row of an epoch after 1"),
        ('{"epoch": 2, "test_elbo": "NaN"}', "test_elbo is 'NaN', not a finite number"),
        ('{"epoch": 2, "test_elbo": NaN}', "test_elbo is nan, not a finite number"),
    ],
)
def test_a_damaged_metrics_line_is_named(line, message, first_epoch, tmp_path, capsys):
    run = copy(first_epoch, tmp_path / "run")
    with open(run / runs.METRICS, "a") as f:
        f.write(line + "\n")
    assert cli.main(["train", "--resume", str(run), "--epochs", "2", "--no-report"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("vaelab: error:") and message in err and "metrics.jsonl" in err, err
    with pytest.raises(VaelabError, match="metrics.jsonl"):
        runs.open_run(run)


def header_metadata(run: Path) -> dict:
    with open(run / runs.WEIGHTS, "rb") as f:
        return json.loads(f.read(int.from_bytes(f.read(8), "little")))["__metadata__"]


def test_damaged_safetensors_metadata_is_a_checkpoint_error(first_epoch, tmp_path):
    run = copy(first_epoch, tmp_path / "run")
    tensors = load_file(run / runs.WEIGHTS)
    for metadata, message in (
        ({"format": "vaelab-1", "model": "mlp", "config": "{nope"}, "not a readable safetensors"),
        ({"format": "vaelab-1", "model": "mlp", "config": "[1]"}, "model config is not a JSON object"),
        ({**header_metadata(first_epoch), "note": "x"}, "holds 'note', a field vaelab never writes"),
    ):
        save_file(tensors, run / runs.WEIGHTS, metadata=metadata)
        with pytest.raises(CheckpointError, match=message):
            runs.load_model(run)


def test_a_run_folder_moved_while_it_trains_gets_no_second_partial_run(tmp_path):
    """The writer's lock is on the folder it opened; when that folder is moved and another put at its
    name, the writer stops instead of writing a run without a config.json there."""
    import vaelab

    out, moved = tmp_path / "run", tmp_path / "moved"

    class Move(vaelab.Callback):
        def on_epoch_end(self, row, run_dir):
            out.rename(moved)
            out.mkdir()

    with pytest.raises(VaelabError, match="was moved or replaced while this process trained into it"):
        vaelab.train(**SETTINGS, epochs=2, out=out, progress=False, callbacks=[Move()])
    assert list(out.iterdir()) == []  # nothing written into the new folder
    assert [r["epoch"] for r in runs.read_metrics(moved)] == [1] and runs.load_model(moved)
