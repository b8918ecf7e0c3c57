"""Data loading on real files: the bundled sample, Debian's Fashion-MNIST, files built here in the
original IDX and CIFAR-10 binary formats, and downloads from a real local HTTP server."""

import gzip
import hashlib
import io
import socket
import tarfile
import threading
from dataclasses import replace
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vaelab.data import DATASETS, describe_datasets, format_data_table, load_dataset, locate_dataset
from vaelab.data.formats import parse_cifar_batch, parse_idx, read_cifar10
from vaelab.data.sources import cache_dir, download_files
from vaelab.errors import DataFormatError, VaelabError

IDX_NAMES = list(DATASETS["mnist"].files)  # train images, train labels, test images, test labels
FASHION = Path("/usr/share/datasets/fashion-mnist")
CIFAR_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
# The autouse fixture below is function-scoped; it sets the environment once per test, which is
# all these property tests need.
fuzz = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@pytest.fixture(autouse=True)
def isolated_data_places(tmp_path, monkeypatch):
    """No VAELAB_DATA, and a download cache inside tmp_path: tests never see the user's files."""
    monkeypatch.delenv("VAELAB_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))


# ---- building files in the original formats ----------------------------------------------------


def idx_bytes(arr: np.ndarray) -> bytes:
    header = bytes([0, 0, 0x08, arr.ndim]) + np.array(arr.shape, ">u4").tobytes()
    return header + arr.astype(np.uint8).tobytes()


def tiny_split(n: int, seed: int = 0, size: int = 28):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, size, size), dtype=np.uint8), np.arange(n, dtype=np.uint8) % 10


def write_idx_set(folder: Path, n_train: int, n_test: int, gz: bool = True) -> Path:
    """The four MNIST files of a tiny set with n_train / n_test images."""
    folder.mkdir(parents=True, exist_ok=True)
    (train_x, train_y), (test_x, test_y) = tiny_split(n_train, 1), tiny_split(n_test, 2)
    for name, arr in zip(IDX_NAMES, (train_x, train_y, test_x, test_y), strict=True):
        raw = idx_bytes(arr)
        path = folder / (name if gz else name.removesuffix(".gz"))
        path.write_bytes(gzip.compress(raw) if gz else raw)
    return folder


def cifar_record(label: int, r, g, b) -> bytes:
    planes = [np.broadcast_to(np.asarray(c, np.uint8), (32, 32)) for c in (r, g, b)]
    return bytes([label]) + b"".join(p.tobytes() for p in planes)


def cifar_batch(n: int, offset: int = 0) -> bytes:
    return b"".join(cifar_record((offset + i) % 10, i, 100 + i, 200) for i in range(n))


def cifar_members(with_meta: bool = True) -> dict[str, bytes]:
    """The real member names and layout, with 3 records per training batch and 4 test records."""
    members = {f"data_batch_{i}.bin": cifar_batch(3, offset=i) for i in range(1, 6)}
    members["test_batch.bin"] = cifar_batch(4)
    if with_meta:
        members["batches.meta.txt"] = ("\n".join(CIFAR_CLASSES) + "\n\n").encode()
    return members


def write_cifar_tar(path: Path, members: dict[str, bytes]) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(f"cifar-10-batches-bin/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


# ---- the bundled sample and Debian's Fashion-MNIST ---------------------------------------------


def test_mnist_sample_loads_4000_train_and_1000_test_real_digits():
    data = load_dataset("mnist-sample")
    assert data.name == "mnist-sample" and data.classes == tuple("0123456789")
    assert data.train_x.shape == (4000, 1, 28, 28) and data.test_x.shape == (1000, 1, 28, 28)
    assert data.train_x.dtype == torch.uint8 and data.train_y.dtype == torch.int64
    assert data.train_x.is_contiguous() and data.image_shape == (1, 28, 28)
    assert data.num_classes == 10
    assert torch.bincount(data.train_y).tolist() == [400] * 10
    assert torch.bincount(data.test_y).tolist() == [100] * 10
    assert data.train_x.min() == 0 and data.train_x.max() == 255
    assert Path(data.source).name == "sample"


@pytest.fixture(scope="module")
def fashion():
    if not (FASHION / "train-images-idx3-ubyte.gz").is_file():
        pytest.skip("Debian package dataset-fashion-mnist is not installed (apt-get install it)")
    return load_dataset("fashion-mnist", download=False)


def test_fashion_mnist_from_the_debian_package(fashion):
    assert fashion.source == str(FASHION)
    assert fashion.train_x.shape == (60000, 1, 28, 28) and fashion.test_x.shape == (10000, 1, 28, 28)
    assert fashion.classes[0] == "T-shirt/top" and fashion.classes[9] == "Ankle boot"
    assert torch.bincount(fashion.train_y).tolist() == [6000] * 10
    assert fashion.num_classes == 10


# ---- parsers on files in the real formats -----------------------------------------------------


@pytest.mark.parametrize("name_gz,content_gz", [(True, True), (False, False), (False, True), (True, False)])
def test_idx_round_trips_with_or_without_gzip_and_suffix(tmp_path, name_gz, content_gz):
    (train_x, train_y), (test_x, test_y) = tiny_split(7, 1, size=5), tiny_split(3, 2, size=5)
    for name, arr in zip(IDX_NAMES, (train_x, train_y, test_x, test_y), strict=True):
        raw = idx_bytes(arr)
        path = tmp_path / (name if name_gz else name.removesuffix(".gz"))
        path.write_bytes(gzip.compress(raw) if content_gz else raw)
    data = load_dataset("mnist", tmp_path, download=False)
    assert data.image_shape == (1, 5, 5)
    assert np.array_equal(data.train_x[:, 0].numpy(), train_x)
    assert np.array_equal(data.test_x[:, 0].numpy(), test_x)
    assert data.train_y.tolist() == train_y.tolist() and data.test_y.tolist() == test_y.tolist()


def test_cifar_archive_gives_images_labels_channels_and_class_names(tmp_path):
    write_cifar_tar(tmp_path / "cifar-10-binary.tar.gz", cifar_members())
    data = load_dataset("cifar10", tmp_path, download=False)
    assert data.train_x.shape == (15, 3, 32, 32) and data.test_x.shape == (4, 3, 32, 32)
    assert data.train_y.tolist()[:6] == [1, 2, 3, 2, 3, 4]  # batch 1 starts at 1, batch 2 at 2
    assert data.classes == CIFAR_CLASSES
    red, green, blue = data.test_x[2]  # record 2 of the test batch: R=2, G=102, B=200
    assert (red == 2).all() and (green == 102).all() and (blue == 200).all()


def test_cifar_reads_rows_in_row_major_order(tmp_path):
    ramp = np.arange(1024, dtype=np.uint8).reshape(32, 32)  # pixel (i, j) = (32 i + j) mod 256
    members = cifar_members()
    members["test_batch.bin"] = cifar_record(7, ramp, ramp.T, 255 - ramp)
    x, y, test_x, test_y, classes = read_cifar10(write_cifar_tar(tmp_path / "c.tar.gz", members))
    assert test_y.tolist() == [7]
    assert np.array_equal(test_x[0, 0], ramp) and np.array_equal(test_x[0, 1], ramp.T)
    assert np.array_equal(test_x[0, 2], 255 - ramp)


def test_cifar_extracted_folder_without_meta_uses_the_standard_names(tmp_path):
    folder = tmp_path / "cifar-10-batches-bin"
    folder.mkdir()
    for name, data in cifar_members(with_meta=False).items():
        (folder / name).write_bytes(data)
    data = load_dataset("cifar10", tmp_path, download=False)
    assert data.source == str(folder) and data.classes == CIFAR_CLASSES
    assert len(data.train_x) == 15


# ---- broken files ------------------------------------------------------------------------------


def break_idx(folder: Path, how: str) -> str:
    """Damage one file of a tiny IDX set in `folder` and return the damaged file's name."""
    images = folder / IDX_NAMES[0]
    raw = gzip.decompress(images.read_bytes())
    if how == "truncated":
        images.write_bytes(gzip.compress(raw[:-5]))
    elif how == "wrong magic":
        images.write_bytes(gzip.compress(b"\x12\x34" + raw[2:]))
    elif how == "type code":
        images.write_bytes(gzip.compress(raw[:2] + b"\x0d" + raw[3:]))
    elif how == "corrupt gzip":
        images.write_bytes(images.read_bytes()[:-20])
    elif how == "count mismatch":
        labels = folder / IDX_NAMES[1]
        labels.write_bytes(gzip.compress(idx_bytes(np.zeros(39, np.uint8))))
    elif how == "label out of range":
        labels = folder / IDX_NAMES[1]
        labels.write_bytes(gzip.compress(idx_bytes(np.full(40, 12, np.uint8))))
        return IDX_NAMES[1]
    return IDX_NAMES[0]


@pytest.mark.parametrize(
    "how,message",
    [
        ("truncated", "truncated: shape (40, 28, 28) needs 31376 bytes, got 31371"),
        ("wrong magic", "wrong magic 0x12340803"),
        ("type code", "type code 0x0d is not supported"),
        ("corrupt gzip", "corrupt or truncated gzip"),
        ("count mismatch", "image/label count mismatch: 40 images vs 39 labels"),
        ("label out of range", "label 12 out of range 0..9"),
    ],
)
def test_broken_idx_files_are_named_with_the_problem_and_the_fix(tmp_path, how, message):
    name = break_idx(write_idx_set(tmp_path, 40, 10), how)
    with pytest.raises(DataFormatError) as e:
        load_dataset("mnist", tmp_path, download=False)
    text = str(e.value)
    assert name in text and message in text, text
    assert "Fix: delete the file" in text and "--data-dir" in text
    assert "https://ossci-datasets.s3.amazonaws.com/mnist/" in text


@pytest.mark.parametrize(
    "change,message",
    [
        (
            lambda m: m.update({"data_batch_3.bin": m["data_batch_3.bin"][:-1]}),
            "data_batch_3.bin: size 9218 bytes is not a positive multiple of the 3073-byte record",
        ),
        (lambda m: m.pop("test_batch.bin"), "missing member cifar-10-batches-bin/test_batch.bin"),
        (
            lambda m: m.update({"test_batch.bin": cifar_record(10, 0, 0, 0)}),
            "test_batch.bin: label 10 out of range 0..9",
        ),
    ],
)
def test_broken_cifar_archives_are_named(tmp_path, change, message):
    members = cifar_members()
    change(members)
    write_cifar_tar(tmp_path / "cifar-10-binary.tar.gz", members)
    with pytest.raises(DataFormatError) as e:
        load_dataset("cifar10", tmp_path, download=False)
    assert "cifar-10-binary.tar.gz" in str(e.value) and message in str(e.value), str(e.value)


def test_a_cifar_archive_that_is_not_a_tar_is_named(tmp_path):
    (tmp_path / "cifar-10-binary.tar.gz").write_bytes(gzip.compress(b"not a tar")[:-3])
    with pytest.raises(DataFormatError, match=r"cifar-10-binary\.tar\.gz: not a readable tar"):
        load_dataset("cifar10", tmp_path, download=False)


# ---- arbitrary bytes raise DataFormatError or parse --------------------------------------------


def parses_or_data_format_error(parse, *args):
    try:
        parse(*args)
    except DataFormatError:
        pass


@fuzz
@given(raw=st.binary(max_size=300), ndim=st.sampled_from([1, 3]))
def test_idx_parser_on_arbitrary_bytes(raw, ndim):
    parses_or_data_format_error(parse_idx, raw, "x.gz", ndim)
    parses_or_data_format_error(parse_idx, gzip.compress(raw), "x.gz", ndim)


@fuzz
@given(shape=st.tuples(*[st.integers(0, 6)] * 3), tail=st.binary(max_size=300))
def test_idx_parser_on_arbitrary_bytes_after_a_valid_header(shape, tail):
    header = bytes([0, 0, 8, 3]) + np.array(shape, ">u4").tobytes()
    parses_or_data_format_error(parse_idx, header + tail, "x", 3)


@fuzz
@given(raw=st.binary(max_size=7000))
def test_cifar_batch_parser_on_arbitrary_bytes(raw):
    parses_or_data_format_error(parse_cifar_batch, raw, "data_batch_1.bin")


@fuzz
@given(raw=st.binary(max_size=2000), gz=st.booleans())
def test_cifar_reader_on_an_arbitrary_archive_file(tmp_path, raw, gz):
    path = tmp_path / "cifar-10-binary.tar.gz"
    path.write_bytes(gzip.compress(raw) if gz else raw)
    parses_or_data_format_error(read_cifar10, path)


@fuzz
@given(contents=st.lists(st.binary(max_size=400), min_size=7, max_size=7))
def test_cifar_reader_on_a_real_archive_with_arbitrary_members(tmp_path, contents):
    members = dict(zip(cifar_members(), contents, strict=False))
    parses_or_data_format_error(read_cifar10, write_cifar_tar(tmp_path / "c.tar.gz", members))


# ---- downloads from a real HTTP server -----------------------------------------------------------


@pytest.fixture
def mirror(tmp_path):
    """An HTTP server on 127.0.0.1 serving tmp_path/served/; yields (folder, base URL)."""
    served = tmp_path / "served"
    served.mkdir()

    class Quiet(SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(Quiet, directory=str(served)))
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    yield served, f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()


def closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}/"


def spec_for(folder: Path):
    """The MNIST table entry with the SHA-256 of the files in `folder` instead of upstream's."""
    files = {n: hashlib.sha256((folder / n).read_bytes()).hexdigest() for n in IDX_NAMES}
    return replace(DATASETS["mnist"], files=files)


def test_downloaded_files_land_in_the_cache_and_load(mirror):
    served, url = mirror
    spec = spec_for(write_idx_set(served, 20, 10))
    download_files(spec, cache_dir("mnist"), [url])
    assert sorted(p.name for p in cache_dir("mnist").iterdir()) == sorted(IDX_NAMES)
    data = load_dataset("mnist", download=False)
    assert data.source == str(cache_dir("mnist")) and len(data.train_x) == 20


def test_a_download_with_the_wrong_checksum_is_refused_and_not_kept(mirror):
    served, url = mirror
    write_idx_set(served, 20, 10)  # not the upstream MNIST files
    with pytest.raises(DataFormatError) as e:
        load_dataset("mnist", mirrors=[url])
    text = str(e.value)
    assert "train-images-idx3-ubyte.gz" in text and "checksum did not match" in text
    assert DATASETS["mnist"].files["train-images-idx3-ubyte.gz"] in text
    actual = hashlib.sha256((served / "train-images-idx3-ubyte.gz").read_bytes()).hexdigest()
    assert actual in text
    assert list(cache_dir("mnist").iterdir()) == []


def test_a_mirror_that_is_down_falls_through_to_the_next(mirror):
    served, url = mirror
    spec = spec_for(write_idx_set(served, 20, 10))
    download_files(spec, cache_dir("mnist"), [closed_port_url(), url])
    assert len(load_dataset("mnist", download=False).train_x) == 20


def test_all_mirrors_down_says_what_is_missing_and_where_to_put_it():
    with pytest.raises(VaelabError) as e:
        load_dataset("mnist", mirrors=[closed_port_url(), closed_port_url()])
    text = str(e.value)
    assert "could not be downloaded" in text and "cannot connect" in text
    assert "Missing files: " + ", ".join(IDX_NAMES) in text
    assert str(cache_dir("mnist")) in text and "--data-dir" in text
    assert "https://ossci-datasets.s3.amazonaws.com/mnist/t10k-labels-idx1-ubyte.gz" in text


# ---- where files are looked for --------------------------------------------------------------


def test_data_dir_beats_vaelab_data_which_beats_the_cache(tmp_path, monkeypatch):
    write_idx_set(cache_dir("mnist"), 10, 5)
    assert len(load_dataset("mnist", download=False).train_x) == 10
    monkeypatch.setenv("VAELAB_DATA", str(tmp_path / "env"))
    write_idx_set(tmp_path / "env" / "mnist", 20, 5)
    assert len(load_dataset("mnist", download=False).train_x) == 20
    write_idx_set(tmp_path / "mine", 30, 5, gz=False)
    data = load_dataset("mnist", tmp_path / "mine", download=False)
    assert len(data.train_x) == 30 and data.source == str(tmp_path / "mine")
    found, tried = locate_dataset("mnist", tmp_path / "mine")
    assert found == tmp_path / "mine" and tried == [f"{tmp_path / 'mine'} (--data-dir)"]


def test_a_data_dir_may_hold_one_folder_per_data_set(tmp_path):
    write_idx_set(tmp_path / "all" / "mnist", 12, 5)
    assert len(load_dataset("mnist", tmp_path / "all", download=False).train_x) == 12


def test_a_folder_with_some_of_the_files_says_which_it_lacks(tmp_path):
    write_idx_set(tmp_path / "mine", 20, 5)
    (tmp_path / "mine" / IDX_NAMES[3]).unlink()
    with pytest.raises(VaelabError) as e:
        load_dataset("mnist", tmp_path / "mine", download=False)
    assert f"{tmp_path / 'mine'} (--data-dir; lacks t10k-labels-idx1-ubyte.gz)" in str(e.value)


def test_a_missing_data_dir_or_an_unknown_name_is_refused(tmp_path):
    with pytest.raises(VaelabError, match="is not a folder"):
        load_dataset("mnist", tmp_path / "nowhere")
    with pytest.raises(
        VaelabError, match="unknown data set 'svhn'; choose one of: mnist, fashion-mnist, cifar10, mnist-sample"
    ):
        load_dataset("svhn")


def test_describe_lists_the_sample_and_says_why_others_are_missing_without_downloading():
    rows = {r["name"]: r for r in describe_datasets()}
    assert list(rows) == list(DATASETS)
    sample = rows["mnist-sample"]
    assert sample["found"] and sample["why_not"] is None
    assert (sample["train_size"], sample["test_size"], sample["image_shape"]) == (4000, 1000, (1, 28, 28))
    mnist = rows["mnist"]
    assert mnist["found"] is None and mnist["train_size"] is None
    assert "not found" in mnist["why_not"] and str(cache_dir("mnist")) in mnist["why_not"]
    assert not cache_dir("mnist").parent.exists()  # nothing downloaded, no cache folder made
    table = format_data_table()
    assert "mnist-sample" in table and "4,000" in table and "1,000" in table
    assert "cifar-10-binary.tar.gz" in table


# ---- the user's own images: folder:PATH and npz:FILE ----------------------------------------


def write_png(path, array):
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def test_folder_with_one_sub_folder_per_class(tmp_path):
    rng = np.random.default_rng(0)
    for cls in ("cat", "dog"):
        for i in range(10):
            write_png(tmp_path / "pets" / cls / f"{i}.png", rng.integers(0, 256, (24, 20, 3), dtype=np.uint8))
    data = load_dataset(f"folder:{tmp_path / 'pets'}")
    assert data.classes == ("cat", "dog") and data.labelled
    assert data.image_shape == (3, 24, 20)
    assert len(data.train_x) == 18 and len(data.test_x) == 2
    assert sorted(torch.cat([data.train_y, data.test_y]).tolist()) == [0] * 10 + [1] * 10


def test_flat_grey_folder_has_no_labels_and_a_conditional_model_says_so(tmp_path):
    for i in range(5):
        write_png(tmp_path / "flat" / f"{i}.png", np.full((16, 16), i * 40, dtype=np.uint8))
    data = load_dataset(f"folder:{tmp_path / 'flat'}")
    assert not data.labelled and data.image_shape == (1, 16, 16)
    from vaelab.config import TrainConfig
    from vaelab.training import train

    with pytest.raises(VaelabError, match="conditional and needs labels"):
        train(
            TrainConfig(model="cvae", dataset=f"folder:{tmp_path / 'flat'}", epochs=1),
            out=str(tmp_path / "run"),
            progress=False,
        )
    assert not (tmp_path / "run").exists()


def test_folder_with_mixed_sizes_names_the_file(tmp_path):
    write_png(tmp_path / "f" / "a.png", np.zeros((16, 16), np.uint8))
    write_png(tmp_path / "f" / "b.png", np.zeros((20, 16), np.uint8))
    with pytest.raises(DataFormatError, match="b.png is 16x20 but .*a.png is 16x16"):
        load_dataset(f"folder:{tmp_path / 'f'}")


def test_npz_layouts_and_errors(tmp_path):
    x = np.random.default_rng(0).random((30, 12, 12, 3)).astype(np.float32)  # NHWC floats in [0, 1]
    np.savez(tmp_path / "d.npz", x=x, y=np.arange(30) % 3)
    data = load_dataset(f"npz:{tmp_path / 'd.npz'}")
    assert data.image_shape == (3, 12, 12) and data.classes == ("0", "1", "2")
    assert len(data.train_x) + len(data.test_x) == 30 and data.train_x.dtype == torch.uint8
    np.savez(tmp_path / "bad.npz", images=x)
    with pytest.raises(DataFormatError, match="no array named 'x'"):
        load_dataset(f"npz:{tmp_path / 'bad.npz'}")
    np.savez(tmp_path / "range.npz", x=x * 3)
    with pytest.raises(DataFormatError, match=r"floats in \[0, 1\]"):
        load_dataset(f"npz:{tmp_path / 'range.npz'}")


def test_user_images_train_with_shapes_from_the_input(tmp_path):
    from vaelab.config import TrainConfig
    from vaelab.training import train

    rng = np.random.default_rng(1)
    np.savez(tmp_path / "d.npz", x=rng.integers(0, 256, (300, 3, 16, 16), dtype=np.uint8), y=rng.integers(0, 4, 300))
    run = train(
        TrainConfig(model="cvae", dataset=f"npz:{tmp_path / 'd.npz'}", epochs=1, batch_size=32),
        out=str(tmp_path / "run"),
        progress=False,
    )
    assert (run / "recon" / "epoch_001.png").is_file()
    np.savez(tmp_path / "odd.npz", x=rng.integers(0, 256, (50, 1, 18, 18), dtype=np.uint8))
    with pytest.raises(VaelabError, match="multiples of 4"):
        train(
            TrainConfig(model="conv", dataset=f"npz:{tmp_path / 'odd.npz'}", epochs=1, batch_size=8),
            out=str(tmp_path / "run2"),
            progress=False,
        )
