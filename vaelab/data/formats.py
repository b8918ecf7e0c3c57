"""Parsers for the original data set files: IDX (MNIST, Fashion-MNIST) and CIFAR-10 binary.

Pure functions from files or bytes to numpy arrays; they never unpickle, never write to disk and
never download. Every problem with a file raises DataFormatError naming the file, what is wrong
and the fix; arbitrary bytes raise nothing else.

IDX: http://yann.lecun.com/exdb/mnist/ ("FILE FORMATS FOR THE MNIST DATABASE"): two zero bytes,
a type code (0x08 = unsigned byte), the number of dimensions, then one big-endian 32-bit size
per dimension, then the data in row-major order.
CIFAR-10 binary: https://www.cs.toronto.edu/~kriz/cifar.html ("Binary version"): records of
1 label byte and 3072 pixel bytes (1024 red, 1024 green, 1024 blue, each 32x32 row-major).
"""

import math
import tarfile
import zlib
from pathlib import Path

import numpy as np

from vaelab.errors import DataFormatError

FIX = (
    "delete the file (vaelab downloads it again when it can) or download the original again, "
    "or pass --data-dir to a folder holding the original files"
)

GZIP_MAGIC = b"\x1f\x8b"
IDX_UBYTE = 0x08
MAX_BYTES = 4 << 30  # the most one data file or array may hold once decompressed: 4 GiB (CIFAR-10's train set is 0.15)

CIFAR_FOLDER = "cifar-10-batches-bin"
CIFAR_TRAIN = tuple(f"data_batch_{i}.bin" for i in range(1, 6))
CIFAR_TEST = "test_batch.bin"
CIFAR_META = "batches.meta.txt"
CIFAR_RECORD = 1 + 3 * 32 * 32  # label byte, then the red, green and blue planes
CIFAR_BATCH = 10_000  # records in each batch file of the original


def bad_file(source, problem: str) -> DataFormatError:
    return DataFormatError(f"{source}: {problem}.\nFix: {FIX}.")


# ---- IDX -------------------------------------------------------------------------------------


def too_large(source, size: int, what: str) -> DataFormatError:
    return DataFormatError(
        f"{source}: {what} {size:,} bytes, more than vaelab reads from one data file "
        f"({MAX_BYTES:,} bytes, vaelab.data.formats.MAX_BYTES); use a smaller data set"
    )


def gunzip_if_gzip(raw: bytes, source, limit: int = MAX_BYTES) -> bytes:
    """The bytes themselves, or at most `limit` bytes of their decompression when they start with
    the gzip magic 1f 8b (every member of a multi-member file, as gzip reads them)."""
    if not raw.startswith(GZIP_MAGIC):
        return raw[:limit]
    out, size, rest = [], 0, raw
    try:
        while rest and size < limit:
            member = zlib.decompressobj(16 + zlib.MAX_WBITS)
            part = member.decompress(rest, limit - size)
            out.append(part)
            size += len(part)
            if not member.eof:
                if size < limit:
                    raise zlib.error("the data end before the gzip stream does")
                break
            rest = member.unused_data.lstrip(b"\0")  # gzip pads some files with zero bytes
            if rest and not rest.startswith(GZIP_MAGIC):
                raise zlib.error("bytes after the gzip data that are not another gzip member")
    except zlib.error as e:
        raise bad_file(source, f"corrupt or truncated gzip data ({str(e) or type(e).__name__})") from None
    return b"".join(out)


def parse_idx(raw: bytes, source, ndim: int) -> np.ndarray:
    """An IDX file's content (gzipped or not) as a read-only uint8 array with `ndim` dimensions.
    Only as many bytes are decompressed as the header promises (and one more, to see trailing
    bytes), and the header may promise at most MAX_BYTES."""
    data = gunzip_if_gzip(raw, source, 4 + 4 * ndim)
    if len(data) < 4:
        raise bad_file(source, f"not an IDX file: {len(data)} bytes, shorter than the 4-byte magic")
    if data[:2] != b"\x00\x00":
        raise bad_file(source, f"not an IDX file: wrong magic 0x{data[:4].hex()} (expected 0x0000080{ndim})")
    if data[2] != IDX_UBYTE:
        raise bad_file(
            source, f"IDX type code 0x{data[2]:02x} is not supported (only 0x08, unsigned bytes, as in MNIST)"
        )
    if data[3] != ndim:
        kind = "images" if ndim == 3 else "labels"
        raise bad_file(source, f"IDX file has {data[3]} dimensions, {kind} need {ndim}")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise bad_file(source, f"truncated IDX header: expected {header} bytes, got {len(data)}")
    shape = tuple(int(d) for d in np.frombuffer(data, ">u4", count=ndim, offset=4))
    expected = header + math.prod(shape)
    if expected > MAX_BYTES:
        raise too_large(source, expected, f"its header promises shape {shape}:")
    data = gunzip_if_gzip(raw, source, expected + 1)
    if len(data) != expected:
        problem = "truncated" if len(data) < expected else "trailing bytes after the data"
        got = len(data) if len(data) < expected else "more"
        raise bad_file(source, f"{problem}: shape {shape} needs {expected} bytes, got {got}")
    return np.frombuffer(data, np.uint8, offset=header).reshape(shape)


def read_idx(path: Path, ndim: int) -> np.ndarray:
    try:
        if Path(path).stat().st_size > MAX_BYTES:
            raise too_large(path, Path(path).stat().st_size, "the file holds")
        raw = Path(path).read_bytes()
    except OSError as e:
        raise bad_file(path, f"cannot be read ({e.strerror or e})") from None
    return parse_idx(raw, path, ndim)


def check_labels(labels: np.ndarray, num_classes: int, source) -> None:
    if labels.size and int(labels.max()) >= num_classes:
        raise bad_file(source, f"label {int(labels.max())} out of range 0..{num_classes - 1}")


def read_idx_split(images_path: Path, labels_path: Path, num_classes: int):
    """(images uint8 [N, 1, H, W], labels uint8 [N]) from a pair of IDX files."""
    images = read_idx(images_path, 3)
    labels = read_idx(labels_path, 1)
    if len(images) != len(labels):
        raise bad_file(
            images_path,
            f"image/label count mismatch: {len(images)} images vs {len(labels)} labels in {Path(labels_path).name}",
        )
    if len(images) == 0:
        raise bad_file(images_path, "holds no images")
    check_labels(labels, num_classes, labels_path)
    return images[:, None], labels  # [N, H, W] -> [N, 1, H, W]


# ---- CIFAR-10 binary -------------------------------------------------------------------------


def parse_cifar_batch(raw: bytes, source, num_classes: int = 10):
    """(images uint8 [N, 3, 32, 32], labels uint8 [N]) from one CIFAR-10 binary batch."""
    if len(raw) == 0 or len(raw) % CIFAR_RECORD:
        raise bad_file(
            source,
            f"size {len(raw)} bytes is not a positive multiple of the "
            f"{CIFAR_RECORD}-byte record (1 label + 3072 pixels)",
        )
    records = np.frombuffer(raw, np.uint8).reshape(-1, CIFAR_RECORD)
    labels = records[:, 0]
    check_labels(labels, num_classes, source)
    return records[:, 1:].reshape(-1, 3, 32, 32), labels


def parse_class_names(raw: bytes, source) -> tuple[str, ...]:
    """Class names from batches.meta.txt: one per line, blank lines ignored."""
    try:
        names = tuple(line.strip() for line in raw.decode("utf-8").splitlines() if line.strip())
    except UnicodeDecodeError:
        raise bad_file(source, "is not UTF-8 text") from None
    if not names:
        raise bad_file(source, "lists no class names")
    return names


def check_member_size(source, name: str, size: int) -> None:
    """A batch holds at most CIFAR_BATCH records (the original's count); the class list is short."""
    limit = 1 << 16 if name == CIFAR_META else CIFAR_BATCH * CIFAR_RECORD
    if size > limit:
        raise bad_file(
            source,
            f"{name} is {size:,} bytes, more than the original's "
            f"{limit:,} ({CIFAR_BATCH:,} records of {CIFAR_RECORD} bytes per batch)",
        )


def cifar_members_in_tar(path: Path) -> dict[str, bytes]:
    """The CIFAR-10 members of a tar(.gz), read in one pass without extracting to disk; each
    member's size is checked from its header before it is read."""
    wanted = {f"{CIFAR_FOLDER}/{name}" for name in (*CIFAR_TRAIN, CIFAR_TEST, CIFAR_META)}
    found = {}
    try:
        with tarfile.open(path, "r:*") as tar:
            for member in tar:  # in archive order: no seeking back through the gzip stream
                name = member.name.removeprefix("./")
                if member.offset_data + member.size > MAX_BYTES:
                    raise too_large(path, member.offset_data + member.size, "the archive unpacks to more than")
                if name in wanted and member.isfile():
                    check_member_size(path, name.split("/")[-1], member.size)
                    found[name.split("/")[-1]] = tar.extractfile(member).read()
    except (tarfile.TarError, OSError, EOFError, zlib.error) as e:
        raise bad_file(path, f"not a readable tar.gz archive ({str(e) or type(e).__name__})") from None
    return found


def cifar_members_in_folder(folder: Path) -> dict[str, bytes]:
    """The CIFAR-10 files of an extracted cifar-10-batches-bin/ folder."""
    found = {}
    for name in (*CIFAR_TRAIN, CIFAR_TEST, CIFAR_META):
        path = Path(folder) / name
        if path.is_file():
            check_member_size(path.parent, name, path.stat().st_size)
            try:
                found[name] = path.read_bytes()
            except OSError as e:
                raise bad_file(path, f"cannot be read ({e.strerror or e})") from None
    return found


def cifar_members(path: Path) -> dict[str, bytes]:
    """The batch files and batches.meta.txt of an archive or folder, by file name."""
    in_folder = path.is_dir()
    members = cifar_members_in_folder(path) if in_folder else cifar_members_in_tar(path)
    missing = [n for n in (*CIFAR_TRAIN, CIFAR_TEST) if n not in members]
    if missing:
        kind, prefix = ("file", "") if in_folder else ("member", f"{CIFAR_FOLDER}/")
        raise bad_file(path, f"missing {kind} " + ", ".join(prefix + n for n in missing))
    return members


def read_cifar10(path: Path):
    """(train_x, train_y, test_x, test_y, classes) from cifar-10-binary.tar.gz or its folder.

    Images are uint8 [N, 3, 32, 32], labels uint8 [N]; classes is None without batches.meta.txt.
    """
    path = Path(path)
    members = cifar_members(path)

    def where(name):  # how error messages name a member
        return path / name if path.is_dir() else f"{path}:{CIFAR_FOLDER}/{name}"

    classes = None
    if CIFAR_META in members:
        classes = parse_class_names(members[CIFAR_META], where(CIFAR_META))
    num_classes = len(classes) if classes else 10
    train = [parse_cifar_batch(members[n], where(n), num_classes) for n in CIFAR_TRAIN]
    test_x, test_y = parse_cifar_batch(members[CIFAR_TEST], where(CIFAR_TEST), num_classes)
    train_x = np.concatenate([x for x, _ in train])  # 5 batches of [10000, 3, 32, 32]
    train_y = np.concatenate([y for _, y in train])
    return train_x, train_y, test_x, test_y, classes
