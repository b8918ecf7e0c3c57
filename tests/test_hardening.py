"""Hostile and broken inputs end in one `vaelab: error:` line that names the problem and the fix:
data files whose headers promise more than they hold (or more than vaelab loads), the user's own
images and arrays, unbounded settings, unwritable outputs, a closed pipe, Ctrl-C while starting.
Each is run here and must leave no traceback."""

import gzip
import io
import json
import re
import resource
import signal
import subprocess
import sys
import tarfile
import time
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import vaelab_cli
from PIL import Image

from vaelab import cli, runs
from vaelab.config import TrainConfig
from vaelab.data import ImageData, load_dataset
from vaelab.data.formats import MAX_BYTES
from vaelab.errors import DataFormatError, VaelabError
from vaelab.evaluation import classifier_path
from vaelab.files import atomic_write
from vaelab.options import caller
from vaelab.training import train
from vaelab.training.advice import divergence_advice

IDX_NAMES = (
    "train-images-idx3-ubyte.gz",
    "train-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
)


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path, monkeypatch):
    monkeypatch.delenv("VAELAB_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))


def refused(capsys, *argv, message: str) -> str:
    """Run `vaelab ARGV` in this process; it must exit 2 with one `vaelab: error:` naming `message`."""
    assert cli.main([str(a) for a in argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("vaelab: error: ") and message in err, err
    assert "Traceback" not in err
    return err


def train_args(dataset: str, out: Path) -> list:
    return [
        "train",
        "--model",
        "mlp",
        "--dataset",
        dataset,
        "--epochs",
        "1",
        "--batch-size",
        "2",
        "--out",
        out,
        "--no-progress",
        "--no-report",
    ]


# ---- data files: sizes checked against what the headers promise, before decompressing ---------------


def idx_header(shape) -> bytes:
    return bytes([0, 0, 8, len(shape)]) + np.array(shape, ">u4").tobytes()


def write_idx(folder: Path, images: bytes) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    x = np.zeros((10, 28, 28), np.uint8)
    y = np.zeros(10, np.uint8)
    for name, raw in zip(
        IDX_NAMES,
        (
            images,
            idx_header(y.shape) + y.tobytes(),
            idx_header(x.shape) + x.tobytes(),
            idx_header(y.shape) + y.tobytes(),
        ),
        strict=True,
    ):
        (folder / name).write_bytes(raw if name == IDX_NAMES[0] else gzip.compress(raw))
    return folder


def test_a_gzip_bomb_is_refused_after_the_bytes_its_header_promises(tmp_path, capsys):
    packer = zlib.compressobj(9, zlib.DEFLATED, 31)
    bomb = packer.compress(idx_header((10, 28, 28))) + b"".join(packer.compress(bytes(1 << 24)) for _ in range(16))
    bomb += packer.flush()  # 1 MB of gzip: 10 promised images, then 256 MB of zeros
    assert len(bomb) < 1 << 20
    folder = write_idx(tmp_path / "mnist", bomb)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    refused(
        capsys,
        *train_args("mnist", tmp_path / "run"),
        "--data-dir",
        folder,
        message="trailing bytes after the data: shape (10, 28, 28) needs 7856 bytes, got more",
    )
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - peak < 200_000  # kB: never the 256 MB
    assert not (tmp_path / "run").exists()


def test_a_header_that_promises_too_much_names_the_limit(tmp_path, capsys):
    folder = write_idx(tmp_path / "mnist", gzip.compress(idx_header((100_000, 1000, 1000))))
    refused(
        capsys,
        *train_args("mnist", tmp_path / "run"),
        "--data-dir",
        folder,
        message=f"its header promises shape (100000, 1000, 1000): 100,000,000,016 bytes, more than vaelab "
        f"reads from one data file ({MAX_BYTES:,} bytes, vaelab.data.formats.MAX_BYTES)",
    )


def test_a_cifar_member_larger_than_a_batch_is_refused_from_its_header(tmp_path):
    archive = tmp_path / "cifar-10-binary.tar.gz"
    with tarfile.open(archive, "w:gz", compresslevel=1) as tar:
        info = tarfile.TarInfo("cifar-10-batches-bin/data_batch_1.bin")
        info.size = 40_000 * 3073  # 4x a batch of zeros: 120 MB, about 100 kB of gzip
        tar.addfile(info, io.BytesIO(bytes(info.size)))
    with pytest.raises(
        DataFormatError, match=r"data_batch_1.bin is 122,920,000 bytes, more than the original's 30,730,000"
    ):
        load_dataset("cifar10", tmp_path, download=False)


# ---- the user's arrays: npz ------------------------------------------------------------------------


def npz(path: Path, **arrays) -> str:
    np.savez(path, **arrays)
    return f"npz:{path}"


X = np.random.default_rng(0).integers(0, 256, (40, 8, 8), dtype=np.uint8)
Y = np.arange(40) % 4

NPZ_CASES = {
    "object array": (dict(x=X, y=np.array([1, "a"] * 20, dtype=object)), "holds Python objects"),
    "empty x_test": (dict(x=X, x_test=X[:0]), "x_test holds no images"),
    "y_test without x_test": (dict(x=X, y=Y, y_test=Y), "has y_test but no x_test"),
    "x_test without y_test": (dict(x=X, y=Y, x_test=X), "has x_test but no y_test"),
    "fractional labels": (dict(x=X, y=Y + 0.5), "labels must be whole numbers"),
    "a label of 10^8": (
        dict(x=X, y=np.where(Y == 3, 10**8, Y)),
        "class indices from 0 to 999 (vaelab.options.MAX_CLASSES)",
    ),
    "negative label": (dict(x=X, y=Y - 1), "class indices from 0 to 999"),
    "y_test too short": (dict(x=X, y=Y, x_test=X[:10], y_test=Y[:9]), "10 images need 10 labels"),
    "y_test beyond the class names": (
        dict(x=X, y=Y, x_test=X[:4], y_test=np.array([0, 1, 2, 7]), classes=np.array(["a", "b", "c", "d"])),
        "labels must be in 0..3",
    ),
    "splits of two sizes": (dict(x=X, x_test=np.zeros((4, 12, 12), np.uint8)), "both splits need one image size"),
    "classes as numbers": (dict(x=X, y=Y, classes=np.arange(4)), "classes must be a list of 1 to 1000 names"),
    "no pixels": (dict(x=np.zeros((40, 0, 8), np.uint8)), "holds no pixels"),
    "labels of another length": (dict(x=X, y=Y[:39]), "40 images need 40 labels"),
    "empty class names": (dict(x=X, y=Y, classes=np.array(["", "", "", ""])), "none empty"),
    "a class name twice": (dict(x=X, y=Y, classes=np.array(["a", "b", "a", "c"])), "each given once"),
}


@pytest.mark.parametrize("case", list(NPZ_CASES))
def test_a_broken_npz_is_named(case, tmp_path, capsys):
    arrays, message = NPZ_CASES[case]
    refused(capsys, *train_args(npz(tmp_path / "d.npz", **arrays), tmp_path / "run"), message=message)


def test_whole_float_labels_are_labels(tmp_path):
    data = load_dataset(npz(tmp_path / "d.npz", x=X, y=Y.astype(np.float32)))
    assert data.classes == ("0", "1", "2", "3") and sorted(set(data.train_y.tolist())) == [0, 1, 2, 3]


def test_a_truncated_npz_member_is_named(tmp_path, capsys):
    np.savez_compressed(tmp_path / "d.npz", x=np.random.default_rng(1).random((400, 8, 8)), y=np.arange(400) % 3)
    raw = bytearray((tmp_path / "d.npz").read_bytes())
    raw[5000:9000] = bytes(4000)  # inside x's compressed data; the archive's directory is intact
    (tmp_path / "d.npz").write_bytes(bytes(raw))
    refused(
        capsys, *train_args(f"npz:{tmp_path / 'd.npz'}", tmp_path / "run"), message="cannot be read as a .npz archive"
    )


def test_an_npz_header_that_promises_terabytes_is_refused_unread(tmp_path, capsys):
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "|u1", "fortran_order": False, "shape": (10**6, 1000, 1000)})
    with zipfile.ZipFile(tmp_path / "d.npz", "w") as archive:
        archive.writestr("x.npy", header.getvalue() + bytes(1000))
    refused(
        capsys,
        *train_args(f"npz:{tmp_path / 'd.npz'}", tmp_path / "run"),
        message="x has shape (1000000, 1000, 1000): 1,000,000,000,000 bytes, more than vaelab loads",
    )


@pytest.mark.parametrize("name", ["npz:", "folder:", "folder:  "])
def test_an_empty_path_is_refused(name, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)  # not the current folder's images, silently
    refused(capsys, *train_args(name, tmp_path / "run"), message="needs a")


# ---- the user's images: folder ---------------------------------------------------------------------


def png(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def test_16_bit_grey_pngs_are_scaled_not_clipped(tmp_path):
    values = (np.arange(64, dtype=np.uint16) * 1000).reshape(8, 8)  # 0 .. 63,000 of 65,535
    for i in range(10):
        png(tmp_path / "deep" / f"{i}.png", values)
    data = load_dataset(f"folder:{tmp_path / 'deep'}")
    assert data.image_shape == (1, 8, 8)
    assert torch.equal(data.train_x[0, 0], torch.from_numpy(np.round(values / 257).astype(np.uint8)))
    assert (data.train_x == 255).float().mean() < 0.05  # not 99.6% white


def test_12_bit_data_in_16_bit_pngs_is_named_with_the_fix(tmp_path, caplog):
    values = (np.arange(64, dtype=np.uint16) * 60).reshape(8, 8)  # 0 .. 3,780 of 65,535: a 12-bit camera's
    for i in range(10):
        png(tmp_path / "deep" / f"{i}.png", values)
    with caplog.at_level("WARNING", logger="vaelab"):
        load_dataset(f"folder:{tmp_path / 'deep'}")
    assert "brightest pixel of 10 16-bit images is 3780 of 65535" in caplog.text and "x 16 for 12 bits" in caplog.text


def test_0_1_pixels_stored_as_uint8_are_named_with_the_fix(tmp_path, caplog):
    with caplog.at_level("WARNING", logger="vaelab"):
        load_dataset(npz(tmp_path / "binary.npz", x=(X > 127).astype(np.uint8), y=Y))
    assert (
        "the brightest pixel is 1 of 255: these are 0/1 values stored as uint8" in caplog.text
        and "multiply them by 255" in caplog.text
    )
    caplog.clear()
    with caplog.at_level("WARNING", logger="vaelab"):
        load_dataset(npz(tmp_path / "grey.npz", x=X, y=Y))
    assert caplog.text == ""


def test_images_beside_class_folders_are_refused(tmp_path, capsys):
    for cls in ("a", "b"):
        for i in range(3):
            png(tmp_path / "f" / cls / f"{i}.png", np.zeros((8, 8), np.uint8))
    png(tmp_path / "f" / "stray.png", np.zeros((8, 8), np.uint8))
    refused(
        capsys,
        *train_args(f"folder:{tmp_path / 'f'}", tmp_path / "run"),
        message="and also 1 image beside them (stray.png...), which would have no class",
    )


def test_an_image_that_opens_but_does_not_decode_is_named(tmp_path, capsys):
    for i in range(4):
        png(tmp_path / "f" / f"{i}.png", np.random.default_rng(i).integers(0, 256, (64, 64), dtype=np.uint8))
    broken = tmp_path / "f" / "2.png"
    broken.write_bytes(broken.read_bytes()[:2000])  # the header survives, most pixels do not
    refused(capsys, *train_args(f"folder:{tmp_path / 'f'}", tmp_path / "run"), message=f"{broken} cannot be decoded")


def test_an_image_of_0x0_pixels_is_named(tmp_path, capsys):
    def chunk(kind: bytes, data: bytes) -> bytes:
        return len(data).to_bytes(4, "big") + kind + data + zlib.crc32(kind + data).to_bytes(4, "big")

    for i in range(3):
        png(tmp_path / "f" / f"{i}.png", np.zeros((8, 8), np.uint8))
    empty = tmp_path / "f" / "3.png"
    empty.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", bytes(8) + bytes([8, 0, 0, 0, 0]))
        + chunk(b"IDAT", zlib.compress(b""))
        + chunk(b"IEND", b"")
    )
    err = refused(capsys, *train_args(f"folder:{tmp_path / 'f'}", tmp_path / "run"), message="3.png")
    assert "remove or replace that file" in err


def test_32_bit_float_images_are_refused_with_the_fix(tmp_path, capsys):
    for i in range(3):
        Image.fromarray(np.full((8, 8), 0.5, np.float32)).save(tmp_path / f"{i}.tiff")
    refused(
        capsys, *train_args(f"folder:{tmp_path}", tmp_path / "run"), message="'F' pixels (32-bit integers or floats)"
    )


def test_a_folder_of_more_images_than_open_files_loads(tmp_path):
    for i in range(300):
        png(tmp_path / "many" / f"{i:03d}.png", np.full((4, 4), i % 256, np.uint8))
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (128, hard))
    try:
        data = load_dataset(f"folder:{tmp_path / 'many'}")
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    assert len(data.train_x) + len(data.test_x) == 300


# ---- settings that would cost unbounded memory or time -------------------------------------------------


@pytest.mark.parametrize(
    "argv,message",
    [
        (["train", "--latent-dim", str(10**8)], "--latent-dim must be at most 4096 (vaelab's limit)"),
        (["train", "--seed", str(10**23)], "--seed must be from 0 to 9223372036854775807"),
        (["train", "--channels", "32,4096"], "--channels must be at most 1024"),
        (["summary", "mlp", "--hidden-dim", "100000"], "--hidden-dim must be at most 16384"),
        (["sample", "RUN", "-n", "1000000"], "expected a number from 1 to 10,000"),
        (["sample", "RUN", "--seed", "-1"], "expected a number from 0 to"),
        (["evaluate", "RUN", "--iw-samples", str(10**9)], "--iw-samples must be at most 100000"),
    ],
)
def test_unbounded_settings_are_refused_naming_the_bound(argv, message, capsys):
    with pytest.raises(SystemExit) as e:  # argparse's own error: usage, then `vaelab CMD: error: ...`
        cli.main(argv)
    err = capsys.readouterr().err
    assert e.value.code == 2 and message in err and "Traceback" not in err, err


def test_a_model_over_the_parameter_limit_is_refused_before_memory_is_taken(capsys):
    refused(
        capsys,
        "train",
        "--model",
        "mlp",
        "--hidden-dim",
        "16384",
        "--hidden-layers",
        "16",
        "--dataset",
        "mnist-sample",
        "--out",
        "/nonexistent/never",
        message="would have 8,079,377,172 parameters, over vaelab's limit of 100,000,000 (vaelab.models.MAX_PARAMS)",
    )


# ---- outputs that cannot be written ----------------------------------------------------------------


def test_an_out_that_is_a_file_or_under_a_file_is_named(tmp_path, capsys):
    (tmp_path / "file").write_text("x")
    refused(
        capsys, *train_args("mnist-sample", tmp_path / "file"), message="is a file, not a folder; pick another --out"
    )
    refused(capsys, *train_args("mnist-sample", tmp_path / "file" / "run"), message="a part of the path is a file")


def test_a_failed_write_names_the_reason_and_leaves_no_temporary_file(tmp_path):
    (tmp_path / "taken").mkdir()
    with pytest.raises(VaelabError, match=r"cannot write .*taken \(Is a directory\): a folder is in the way"):
        atomic_write(tmp_path / "taken", b"data")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["taken"]  # no .taken.tmp


def test_sample_into_a_missing_folder_or_from_nan_weights_is_named(untrained_run, tmp_path, capsys):
    refused(capsys, "sample", untrained_run, "--out", tmp_path / "no" / "s.png", message="its folder does not exist")
    run = tmp_path / "nan"
    run.mkdir()
    (run / runs.CONFIG).write_bytes((untrained_run / runs.CONFIG).read_bytes())
    model, _ = runs.load_model(untrained_run)
    with torch.no_grad():
        model.decoder.out.bias.fill_(float("nan"))
    runs.save_weights(run / runs.WEIGHTS, model, "mlp")
    refused(capsys, "sample", run, message="decoder.out.bias holds NaN or infinite values")
    assert not (run / runs.SAMPLES).exists()  # not a black PNG


# ---- the process: a closed pipe, Ctrl-C while starting ----------------------------------------------


@pytest.mark.slow  # a real process and its pipe
def test_a_closed_output_pipe_is_one_line(untrained_run):
    process = subprocess.Popen(
        [sys.executable, "-m", "vaelab", "summary", "conv"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    process.stdout.close()  # as `| head` does once it has its lines
    err = process.stderr.read()
    assert process.wait(120) == 141
    assert (
        err.startswith("vaelab: error: the output was closed") and "Traceback" not in err and "Exception" not in err
    ), err


@pytest.mark.slow  # a real process, interrupted
@pytest.mark.parametrize("delay", [0.2, 0.5, 1.0, 2.5])
def test_ctrl_c_while_starting_is_one_line(delay, tmp_path):
    """While torch loads, while the data load, or in the first steps (2,000 steps of 2 images ahead):
    Ctrl-C always stops the command, with one line and status 130."""
    process = subprocess.Popen(
        [sys.executable, "-m", "vaelab", *map(str, train_args("mnist-sample", tmp_path / "run"))],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    time.sleep(delay)
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=300)
    assert process.returncode == 130 and "Traceback" not in err and "KeyboardInterrupt" not in err, err
    assert err.splitlines()[-1].startswith(("vaelab: interrupted", "vaelab: error: stopped by SIGINT")), err


# ---- advice that fits the cause ---------------------------------------------------------------------------


@pytest.mark.parametrize("language", ["python", "cli"])
def test_a_divergence_in_the_first_epoch_promises_no_checkpoint(tmp_path, language):
    with pytest.raises(VaelabError) as e, caller(language):
        train(
            TrainConfig(model="mlp", dataset="mnist-sample", epochs=1, batch_size=500, lr=1e30),
            out=tmp_path / "run",
            progress=False,
        )
    text = str(e.value)
    assert "non-finite in epoch 1" in text and "No checkpoint was written yet" in text and "epoch 0" not in text
    again = "--lr 1e+29 --clip-grad 10 --overwrite" if language == "cli" else "lr=1e+29, clip_grad=10, overwrite=True"
    assert again in text and not (tmp_path / "run" / runs.CHECKPOINT).exists()


class NaNDecoder(torch.nn.Module):
    """A decoder of your own that goes wrong before any training: log of a ReLU that can be 0."""

    def __init__(self, config):
        super().__init__()
        self.net = torch.nn.Linear(config.latent_dim, 784)

    def forward(self, z, y=None):
        return torch.log(torch.relu(self.net(z)) * 0).view(-1, 1, 28, 28)  # -inf everywhere


def test_a_model_that_is_not_finite_before_any_update_is_blamed_not_the_learning_rate(tmp_path):
    import vaelab

    config = vaelab.ModelConfig(latent_dim=2)
    model = vaelab.VAE(config, Encoder2(config), NaNDecoder(config))
    with pytest.raises(VaelabError) as e:
        vaelab.train(model=model, dataset="mnist-sample", epochs=1, out=tmp_path / "run", progress=False)
    text = str(e.value)
    assert "your model's logits holds NaN or infinite values" in text and "no learning rate can help" in text
    assert "--lr" not in text and not (tmp_path / "run").exists()  # refused before the run folder was made


class Encoder2(torch.nn.Module):
    def __init__(self, config):
        super().__init__()
        self.mu, self.logvar = torch.nn.Linear(784, 2), torch.nn.Linear(784, 2)

    def forward(self, x, y=None):
        return self.mu(x.flatten(1)), self.logvar(x.flatten(1))


@pytest.mark.parametrize(
    "settings,named",
    [
        (dict(beta=1e6), "--beta 1e+06"),
        (dict(likelihood="gaussian", gaussian_std=1e-4), "--gaussian-std 0.0001"),
        (dict(objective="mmd", mmd_weight=1e7), "--mmd-weight 1e+07"),
        (dict(), None),
    ],
)
def test_divergence_advice_names_the_setting_that_makes_the_loss_large(settings, named):
    with caller("cli"):
        advice = divergence_advice(TrainConfig(**settings), Path("runs/x"), "end of epoch 3")
    assert "vaelab train --resume runs/x --lr 0.0001 --clip-grad 10" in advice and "end of epoch 3" in advice
    in_python = divergence_advice(TrainConfig(**settings), Path("runs/x"), "end of epoch 3")
    assert "vaelab.resume('runs/x', lr=0.0001, clip_grad=10)" in in_python and "--" not in in_python
    assert (
        (named in advice and "train again with smaller values" in advice)
        if named
        else "make the loss large" not in advice
    )


# ---- the report on data with fewer than 10 classes, and the classifier cache --------------------------


def test_training_on_three_classes_ends_with_its_report(tmp_path, capsys):
    dataset = npz(tmp_path / "d.npz", x=np.repeat(X, 3, axis=0), y=np.repeat(Y % 3, 3))
    assert (
        cli.main(
            [
                "train",
                "--model",
                "cvae-mlp",
                "--dataset",
                dataset,
                "--epochs",
                "1",
                "--batch-size",
                "20",
                "--out",
                str(tmp_path / "run"),
                "--no-progress",
            ]
        )
        == 0
    )
    assert "report: " in capsys.readouterr().out and (tmp_path / "run" / "figures" / "walks.png").is_file()
    with pytest.raises(SystemExit):  # a flag that names a missing class is argparse's error
        cli.main(["report", str(tmp_path / "run"), "--labels", "4"])
    assert "--labels 4: not a class; this run's data has classes 0..2" in capsys.readouterr().err


def test_the_classifier_cache_is_keyed_by_content_and_stays_in_its_folder():
    def data(name, seed):
        x = torch.from_numpy(np.random.default_rng(seed).integers(0, 256, (20, 1, 8, 8), dtype=np.uint8))
        return ImageData(
            name, x[:16], torch.zeros(16, dtype=torch.int64), x[16:], torch.zeros(4, dtype=torch.int64), ("a",), "here"
        )

    a, b, same = (
        classifier_path(data("npz:data.npz", 0)),
        classifier_path(data("npz:data.npz", 1)),
        classifier_path(data("npz:data.npz", 0)),
    )
    assert a != b and a == same and a.name.startswith("npz_data_npz-")
    hostile = classifier_path(data("npz:../../../etc/x", 0))
    assert hostile.parent == a.parent and ".." not in hostile.name


# ---- paths that ended in raw errors ------------------------------------------------------------------


def test_an_unlabelled_run_is_evaluated_without_its_classifiers(tmp_path, capsys):
    dataset = npz(tmp_path / "d.npz", x=np.repeat(X, 5, axis=0))  # no y: one "unlabelled" class
    assert cli.main(train_args(dataset, tmp_path / "run")) == 0
    capsys.readouterr()
    assert cli.main(["evaluate", str(tmp_path / "run"), "--iw-samples", "2", "--no-progress"]) == 0
    result = json.loads((tmp_path / "run" / runs.EVAL).read_text())
    assert "latent_classifiers" not in result and "no labels" in result["note_classifiers"]
    assert "sample_quality" not in result and "not measured" in result["note_quality"]


def test_a_run_on_1x1_images_ends_with_its_report(tmp_path, capsys):
    dataset = npz(tmp_path / "d.npz", x=X[:, :1, :1].repeat(5, axis=0), y=np.repeat(Y, 5))
    assert cli.main(train_args(dataset, tmp_path / "run")[:-1]) == 0  # with the report
    assert (tmp_path / "run" / runs.REPORT).is_file()


@pytest.mark.parametrize(
    "content,message",
    [
        ('"just text"', "the content is not a JSON object"),
        ('{"model": ["mlp"], "model_config": {}, "train": {}, "data": {}}', '"model" must be a model name'),
    ],
)
def test_a_config_file_of_the_wrong_shape_is_named(tmp_path, capsys, content, message):
    (tmp_path / "config.json").write_text(content)
    refused(capsys, "train", "--config", tmp_path / "config.json", "--out", tmp_path / "run", message=message)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    "callbacks,message",
    [([object()], "has no on_train_begin()"), ("TensorBoard(step_every=0)", "step_every must be a whole number")],
)
def test_callbacks_are_checked_before_the_run_folder_is_made(tmp_path, callbacks, message):
    import vaelab

    if isinstance(callbacks, str):
        callbacks = [vaelab.TensorBoard(step_every=0)]
    with pytest.raises(VaelabError, match=message):
        vaelab.train("mlp", "mnist-sample", epochs=1, out=tmp_path / "run", callbacks=callbacks, progress=False)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    "call,message",
    [
        (lambda run: run.samples(n=10**7), "n must be from 1 to 10000"),
        (lambda run: run.manifold(grid=10**6), "grid must be from 2 to 64"),
        (lambda run: run.class_grid(per_class=0), "per_class must be from 1 to 20"),
        (lambda run: run.walks(steps=10**5), "steps must be from 2 to 32"),
        (lambda run: run.walks(pairs=[(1, 11)]), "pairs 1:11: not a pair of classes"),
        (lambda run: run.scatter(z="x"), "z must be one of mean, sample"),
        (lambda run: run.manifold(label=3), "this run.s model \\(mlp\\) is not conditional; leave label out"),
        (lambda run: run.samples(seed=-1), "seed must be from 0 to"),
        (lambda run: run.resume(epochs=2**40), "epochs must be at most 100000"),
        (lambda run: run.walks(pairs="1:7"), "pairs must be a list of pairs of whole numbers"),
        (lambda run: run.walks(pairs=[(1,)]), "pairs must be a list of pairs of whole numbers"),
        (lambda run: vaelab_load(run.dir, device="tpu"), "device must be one of"),
    ],
)
def test_the_notebook_api_bounds_what_the_cli_bounds(untrained_run, call, message):
    """The same bounds, named as the notebook's caller wrote them (`n`, `pairs`, `per_class`), not as flags."""
    import vaelab

    with pytest.raises(VaelabError, match="^" + message):
        call(vaelab.load(untrained_run))


def vaelab_load(*args, **kwargs):
    import vaelab

    return vaelab.load(*args, **kwargs)


@pytest.mark.parametrize(
    "values,message",
    [
        (range(10**6), "takes a list of 1 to 100 values (one run each), got more than 100"),
        ("2,4", "takes the values as a list, such as (2, 8, 32), got '2,4'"),
        ((), "takes a list of 1 to 100 values (one run each), got none"),
        ((0.1, 0.10000000001), "gives seed-0.1 twice"),
    ],
)
def test_a_sweep_of_too_many_or_repeated_values_is_refused_before_training(tmp_path, values, message):
    import vaelab

    with pytest.raises(VaelabError, match=re.escape(message)):
        vaelab.sweep("seed", values, tmp_path / "sweep", epochs=1)
    assert not (tmp_path / "sweep").exists()


@pytest.mark.parametrize("folder", [123, None, ""])
def test_a_run_folder_that_is_not_a_path_is_named(folder):
    import vaelab

    with pytest.raises(VaelabError, match="a run folder is a path"):
        vaelab.load(folder)


def test_a_typo_in_a_setting_gets_did_you_mean(tmp_path):
    import vaelab

    with pytest.raises(VaelabError, match="has no setting 'epoch'; did you mean epochs"):
        vaelab.train("mlp", "mnist-sample", epoch=1, out=tmp_path / "run")
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    "keyword, flag, value, message",
    [
        ("batch_size", "--batch-size", 0, "must be at least 1, got 0"),
        ("lr", "--lr", "nan", "must be a finite number, got nan"),
        ("device", "--device", "tpu", "must be one of"),
    ],
)
def test_a_bad_setting_is_named_as_its_caller_wrote_it(keyword, flag, value, message):
    """In Python the keyword (`batch_size=0`), on the command line the flag (`--batch-size 0`):
    a notebook's user never sees a flag they did not type, and a shell's user never a keyword."""
    import vaelab

    given = float(value) if value == "nan" else value
    with pytest.raises(VaelabError, match=f"^{keyword} {message}"):
        vaelab.train("mlp", "mnist-sample", **{keyword: given})
    result = vaelab_cli("train", "--dataset", "mnist-sample", flag, value)
    assert result.returncode == 2 and f"{flag} {message}" in result.stderr, result.stderr
