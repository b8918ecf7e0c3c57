"""Where each data set's files come from: the table, the places searched, and downloading.

A data set is read from the first of these places that holds all of its files:

  1. `data_dir` (the --data-dir flag), then `data_dir/<name>/`;
  2. `$VAELAB_DATA/<name>/`: one folder per data set under the folder in VAELAB_DATA;
  3. the download cache, `pooch.os_cache("vaelab")/<name>/` (~/.cache/vaelab/<name>/ on Linux,
     under $XDG_CACHE_HOME when that is set);
  4. the data set's system folders (Fashion-MNIST: Debian's package dataset-fashion-mnist).

Files found on disk are checked by parsing them, not by hash: packaged copies such as Debian's
are re-compressed, so their hashes differ from upstream. Downloads go into the cache and must
match the upstream SHA-256. The bundled `mnist-sample` is read from this package only.
"""

import os
import re
from dataclasses import dataclass
from pathlib import Path

from vaelab.data.formats import CIFAR_FOLDER, CIFAR_TRAIN
from vaelab.errors import DataFormatError, VaelabError
from vaelab.options import as_given

SAMPLE_DIR = Path(__file__).parent / "sample"


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    format: str  # "idx" (MNIST layout) or "cifar10-binary"
    files: dict[str, str | None]  # upstream file name -> its SHA-256 (None: not downloadable)
    mirrors: tuple[str, ...]  # base URLs tried in order; a file's URL is base + name
    system_dirs: tuple[str, ...]  # folders where operating-system packages install it
    classes: tuple[str, ...]
    about: str


def idx_files(*sha256: str | None) -> dict[str, str | None]:
    names = (
        "train-images-idx3-ubyte.gz",
        "train-labels-idx1-ubyte.gz",
        "t10k-images-idx3-ubyte.gz",
        "t10k-labels-idx1-ubyte.gz",
    )
    return dict(zip(names, sha256 or (None,) * 4, strict=True))


DIGITS = tuple(str(d) for d in range(10))

DATASETS = {
    # LeCun, Cortes & Burges, http://yann.lecun.com/exdb/mnist/ (the mirrors PyTorch uses)
    "mnist": DatasetSpec(
        "mnist",
        "idx",
        idx_files(
            "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
            "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
            "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
            "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
        ),
        ("https://ossci-datasets.s3.amazonaws.com/mnist/", "https://storage.googleapis.com/cvdf-datasets/mnist/"),
        (),
        DIGITS,
        "handwritten digits, 28x28 grey",
    ),
    # Xiao, Rasul & Vollgraf 2017, https://github.com/zalandoresearch/fashion-mnist
    "fashion-mnist": DatasetSpec(
        "fashion-mnist",
        "idx",
        idx_files(
            "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84",
            "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845",
            "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073",
            "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5",
        ),
        ("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",),
        ("/usr/share/datasets/fashion-mnist",),
        ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"),
        "Zalando clothing images, 28x28 grey",
    ),
    # Krizhevsky 2009, https://www.cs.toronto.edu/~kriz/cifar.html (the binary version)
    "cifar10": DatasetSpec(
        "cifar10",
        "cifar10-binary",
        {"cifar-10-binary.tar.gz": "c4a38c50a1bc5f3a1c5537f2155ab9d68f9f25eb1ed8d9ddda3db29a59bca1dd"},
        ("https://www.cs.toronto.edu/~kriz/",),
        (),
        ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"),
        "32x32 colour photographs",
    ),
    # 5,000 real MNIST digits bundled with vaelab; see sample/README.md
    "mnist-sample": DatasetSpec(
        "mnist-sample",
        "idx",
        idx_files(),
        (),
        (),
        DIGITS,
        "5,000 MNIST digits bundled with vaelab, 4,000 train / 1,000 test",
    ),
}


def get_spec(name: str) -> DatasetSpec:
    if name not in DATASETS:
        raise VaelabError(
            f"unknown data set '{name}'; choose one of: {', '.join(DATASETS)}, "
            f"or your own images as folder:PATH or npz:FILE"
        )
    return DATASETS[name]


def import_pooch():
    """pooch, imported without the TqdmWarning that its import of tqdm.auto raises in a notebook
    without ipywidgets (vaelab shows no widget bar there: one line per epoch, vaelab/progress.py)."""
    import warnings

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="IProgress not found")
        import pooch
    return pooch


def cache_dir(name: str) -> Path:
    """Where downloads of data set `name` go (read at call time, so XDG_CACHE_HOME applies)."""
    try:
        pooch = import_pooch()  # needed only to download: a machine without it still reads local copies
    except ImportError:
        return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "vaelab" / name
    return Path(pooch.os_cache("vaelab")) / name


# ---- locating --------------------------------------------------------------------------------


def find_file(folder: Path, name: str) -> Path | None:
    """folder/name, or the same file without its .gz suffix (already decompressed)."""
    for candidate in (folder / name, folder / name.removesuffix(".gz")):
        if candidate.is_file():
            return candidate
    return None


def dataset_in(spec: DatasetSpec, folder: Path) -> Path | None:
    """What to read for `spec` in `folder`: the folder (IDX), archive or batches folder (CIFAR)."""
    if spec.format == "idx":
        return folder if all(find_file(folder, n) for n in spec.files) else None
    archive = find_file(folder, "cifar-10-binary.tar.gz")
    if archive:
        return archive
    for batches in (folder / CIFAR_FOLDER, folder):
        if (batches / CIFAR_TRAIN[0]).is_file():
            return batches
    return None


def search_places(spec: DatasetSpec, data_dir=None) -> list[tuple[Path, str]]:
    """The folders searched for `spec`, in order, each with how the user puts files there."""
    if spec.name == "mnist-sample":
        return [(SAMPLE_DIR, "bundled with vaelab")]
    places = []
    if data_dir is not None:
        places += [(Path(data_dir), "--data-dir"), (Path(data_dir) / spec.name, "--data-dir")]
    if os.environ.get("VAELAB_DATA"):
        places.append((Path(os.environ["VAELAB_DATA"]) / spec.name, "$VAELAB_DATA/<name>"))
    places.append((cache_dir(spec.name), "download cache"))
    return places + [(Path(d), "system folder") for d in spec.system_dirs]


def check_data_dir(data_dir) -> None:
    if data_dir is not None and not Path(data_dir).is_dir():
        raise VaelabError(
            f"{as_given('data_dir', data_dir)} is not a folder; pass the folder that holds the data set's "
            "original files"
        )


def locate_dataset(name: str, data_dir=None) -> tuple[Path | None, list[str]]:
    """The folder or file holding data set `name` (None if absent), and the places tried."""
    spec = get_spec(name)
    check_data_dir(data_dir)
    tried = []
    for folder, how in search_places(spec, data_dir):
        found = dataset_in(spec, folder)
        tried.append(f"{folder} ({how}{partial_note(spec, folder) if not found else ''})")
        if found:
            return found, tried
    return None, tried


def partial_note(spec: DatasetSpec, folder: Path) -> str:
    """For a folder holding some of an IDX set's files: which ones it lacks."""
    missing = [n for n in spec.files if find_file(folder, n) is None]
    if spec.format != "idx" or len(missing) == len(spec.files):
        return ""
    return "; lacks " + ", ".join(missing)


# ---- downloading -----------------------------------------------------------------------------


def why_failed(error: Exception) -> str:
    import requests

    if isinstance(error, requests.HTTPError):
        return f"HTTP {error.response.status_code}"
    if isinstance(error, requests.Timeout):
        return "timed out"
    if isinstance(error, requests.ConnectionError):
        return "cannot connect (offline, or the server is down)"
    return str(error)


REACH_TIMEOUT = 5  # seconds to wait for a mirror's answer before calling it unreachable


def reachable(url: str) -> str | None:
    """Why `url` cannot be downloaded now, or None: a quiet HEAD request, so that an offline machine
    hears that the data is unavailable, not that a download has started."""
    import requests

    try:
        requests.head(url, timeout=REACH_TIMEOUT, allow_redirects=True).raise_for_status()
    except requests.RequestException as e:
        return why_failed(e)
    return None


def fetch(name: str, sha256: str, dest: Path, mirrors, progress: bool) -> list[str]:
    """Download one file into dest from the first mirror that serves it with the right SHA-256.

    Returns why each mirror failed; empty on success. pooch downloads to a temporary file and
    moves it into place only when the hash matches, so a bad download leaves nothing behind.
    A mirror that does not answer a HEAD request is skipped before pooch announces a download.
    """
    if not mirrors:
        return [f"{name}: no mirror to download it from"]
    import requests

    pooch = import_pooch()
    failures = []
    for mirror in mirrors:
        url = mirror.rstrip("/") + "/" + name
        if problem := reachable(url):
            failures.append(f"{url}: {problem}")
            continue
        try:
            pooch.retrieve(url, known_hash=f"sha256:{sha256}", fname=name, path=dest, progressbar=progress)
            return []
        except requests.RequestException as e:
            failures.append(f"{url}: {why_failed(e)}")
        except ValueError as e:  # pooch's hash mismatch; it deleted the download
            got = re.search(r"got ([0-9a-fA-F]{64})", str(e))
            failures.append(
                f"{url}: checksum did not match: expected sha256 {sha256}, got {got.group(1) if got else str(e)}"
            )
    return failures


def download_files(spec: DatasetSpec, dest: Path, mirrors=None, progress: bool = False, tried=()) -> Path:
    """Download the files of `spec` missing from `dest`, trying `mirrors` (default: the spec's).

    Raises DataFormatError when a download does not match its SHA-256, VaelabError when no
    mirror could be reached; both say which files are missing and where to put them.
    """
    mirrors = spec.mirrors if mirrors is None else tuple(mirrors)
    dest = Path(dest)
    for name, sha256 in spec.files.items():
        if find_file(dest, name) is None:
            failures = fetch(name, sha256, dest, mirrors, progress)
            if failures:
                raise download_error(spec, dest, name, failures, tried)
    return dest


def download_error(spec, dest: Path, name: str, failures: list[str], tried) -> VaelabError:
    bad_checksum = any("checksum did not match" in f for f in failures)
    headline = (
        f"the download of {name} does not match its checksum; nothing was kept"
        if bad_checksum
        else f"data set '{spec.name}' is not on this machine and could not be downloaded"
    )
    lines = [headline, f"Download of {name} failed:", *("  " + f for f in failures)]
    if bad_checksum:
        lines.append(
            "The mirror served a corrupted or changed file: try again later, or get the "
            "original from another source and pass its folder as --data-dir."
        )
    message = "\n".join(lines) + "\n" + not_found_help(spec, dest, tried)
    return (DataFormatError if bad_checksum else VaelabError)(message)


def not_found_help(spec: DatasetSpec, dest: Path, tried) -> str:
    """Which files are missing, where vaelab looked, and where to put them."""
    missing = [n for n in spec.files if find_file(dest, n) is None] or list(spec.files)
    lines = ["Missing files: " + ", ".join(missing), "Searched:", *("  " + t for t in tried)]
    if spec.mirrors:
        lines += [
            f"Fix: let vaelab download them when online, or download them yourself into "
            f"{dest} (or any folder you then pass as --data-dir):",
            *(f"  {spec.mirrors[0]}{n}" for n in missing),
        ]
    else:
        lines.append(f"Fix: reinstall vaelab; {spec.name} ships inside the package.")
    if spec.name == "cifar10":
        lines.append(
            "vaelab reads the binary version (cifar-10-binary.tar.gz, or its extracted "
            f"{CIFAR_FOLDER}/ folder), not the python pickle version."
        )
    return "\n".join(lines)
