"""Sample quality, judged by a small convolutional classifier trained once per data set.

    <cache>/classifiers/<dataset>-<hash>.safetensors   the classifier, with its test accuracy in
                                        the metadata; <hash> is of the data's content (two npz files of
                                        one name get two classifiers), and <dataset> keeps only letters,
                                        digits, '-' and '_' (<cache> is pooch.os_cache("vaelab"),
                                        ~/.cache/vaelab on Linux, or $XDG_CACHE_HOME/vaelab)
    vaelab/evaluation/classifiers/      the ones vaelab ships (the sample, Fashion-MNIST), copied into
                                        the cache when the data's content matches: no training on
                                        first use (bench/classifiers.py trains them)

From it: the Fréchet distance between its penultimate-layer features of generated images and of
the test images (a classifier-feature Fréchet distance: the formula of FID, but on this small
classifier's features, so its values are not comparable with published FIDs), and the mean
confidence and class balance of its predictions on the generated images.
"""

import hashlib
import json
import os
import re
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from vaelab.data.pixels import to_float
from vaelab.device import device_of
from vaelab.errors import CheckpointError
from vaelab.options import as_given

FORMAT = "vaelab-classifier-1"


class Classifier(nn.Module):
    """conv 3x3 16 ReLU, max-pool 2, conv 3x3 32 ReLU, max-pool 2, Dense 64 ReLU (the features),
    Dense num_classes: about 0.1 M parameters at 28x28, a few seconds per epoch of 60,000 images."""

    def __init__(self, image_shape, num_classes: int, feature_dim: int = 64):
        super().__init__()
        c, h, w = image_shape
        self.image_shape, self.num_classes = tuple(image_shape), num_classes
        self.conv1 = nn.Conv2d(c, 16, 3, padding=1)
        self.conv2 = nn.Conv2d(16, 32, 3, padding=1)
        self.dense = nn.Linear(32 * (h // 4) * (w // 4), feature_dim)
        self.head = nn.Linear(feature_dim, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        h = nn.functional.max_pool2d(torch.relu(self.conv1(x)), 2)  # [B, 16, H/2, W/2]
        h = nn.functional.max_pool2d(torch.relu(self.conv2(h)), 2)  # [B, 32, H/4, W/4]
        return torch.relu(self.dense(h.flatten(1)))  # [B, feature_dim]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))  # logits


def can_judge(data) -> bool:
    """Whether the classifier can be trained on `data`: labels of two classes or more, and images of
    at least 4 x 4 pixels (it pools twice)."""
    return data.labelled and data.num_classes >= 2 and min(data.image_shape[1:]) >= 4


def classifier_path(data) -> Path:
    """The cached classifier of `data` (a vaelab.data.ImageData), named by its content."""
    from vaelab.data import cache_dir  # pooch's cache folder, imported without tqdm's notebook warning

    folder = cache_dir("classifiers")
    name = re.sub(r"[^A-Za-z0-9_-]+", "_", data.name)[-40:].strip("_") or "data"
    path = folder / f"{name}-{fingerprint(data)}.safetensors"
    assert path.parent == folder  # only letters, digits, - and _ above: no way out of the folder
    return path


def fingerprint(data) -> str:
    """16 hex digits of SHA-256 over the images, labels and class names of both splits."""
    digest = hashlib.sha256(json.dumps([list(data.classes), list(data.image_shape)]).encode())
    for t in (data.train_x, data.train_y, data.test_x, data.test_y):
        digest.update(str(tuple(t.shape)).encode())
        digest.update(t.contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


def train_classifier(data, epochs: int = 3, seed: int = 0, device="cpu", batch_size: int = 128):
    """(classifier, test accuracy) after `epochs` of Adam on the training split (grey pixels)."""
    with torch.random.fork_rng():  # seeded weights without touching the caller's random state
        torch.manual_seed(seed)
        model = Classifier(data.image_shape, data.num_classes).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    order = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        perm = torch.randperm(len(data.train_x), generator=order)
        for i in range(0, len(perm), batch_size):
            idx = perm[i : i + batch_size]
            loss = nn.functional.cross_entropy(
                model(to_float(data.train_x[idx].to(device))), data.train_y[idx].to(device)
            )
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    _, probs = predict(model.eval(), to_float(data.test_x))
    return model, float((probs.argmax(1) == data.test_y.numpy()).mean())


def save_classifier(path: Path, model: Classifier, info: dict) -> None:
    from safetensors.torch import save

    from vaelab.files import atomic_write

    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    atomic_write(path, save(tensors, metadata={"format": FORMAT, "info": json.dumps(info)}))


def load_classifier(path: Path, device="cpu"):
    """(classifier, info) from a file written by `save_classifier`."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            meta, tensors = f.metadata() or {}, {k: f.get_tensor(k) for k in f.keys()}
        info = json.loads(meta["info"])
    except Exception as e:  # any damage: truncated, foreign or not safetensors at all
        raise CheckpointError(
            f"{path} is not a readable vaelab classifier ({e}); delete it, "
            f"or pass --retrain-classifier, and it is trained again"
        ) from None
    if meta.get("format") != FORMAT:
        raise CheckpointError(
            f"{path} has format {meta.get('format')!r}, not {FORMAT!r}; delete it or pass --retrain-classifier"
        )
    try:
        with torch.device("meta"):  # shapes first: the description alone must not size the memory taken
            probe = Classifier(info["image_shape"], info["num_classes"]).state_dict()
        if {k: v.shape for k, v in probe.items()} != {k: v.shape for k, v in tensors.items()}:
            raise ValueError("its tensors do not have the classifier's names and shapes")
        model = Classifier(info["image_shape"], info["num_classes"])
        model.load_state_dict(tensors)
    except (KeyError, TypeError, ValueError, RuntimeError) as e:  # a wrong shape, or a tampered description
        raise CheckpointError(
            f"{path} does not hold the classifier it describes ({e}); delete it, or pass "
            f"{as_given('retrain_classifier', True)}, and it is trained again"
        ) from None
    return model.to(device).eval(), info


def default_epochs(train_size: int) -> int:
    """3 passes over a full set; more over a small one (15 over the 4,000-image sample)."""
    return max(3, min(15, 60_000 // train_size))


BUNDLED = Path(__file__).parent / "classifiers"  # for the data sets vaelab ships or finds: bench/classifiers.py


def get_classifier(data, epochs: int | None = None, device="cpu", retrain: bool = False):
    """(classifier, info): the cached one for `data`, else the one vaelab ships for that data (the
    sample, Fashion-MNIST), copied into the cache, else one trained now (and cached). Processes
    that ask at once train it once: the others wait for it and read it."""
    from filelock import FileLock

    path = classifier_path(data)
    if not retrain and (found := cached_classifier(path, data, device)):
        return found
    path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(f"{path}.lock"):
        if not retrain and (found := cached_classifier(path, data, device)):  # another process trained it
            return found
        shipped = next(BUNDLED.glob(f"*-{path.stem.rsplit('-', 1)[1]}.safetensors"), None)  # by content, any name
        if not retrain and shipped:
            from vaelab.files import atomic_write

            atomic_write(path, shipped.read_bytes())
            if found := cached_classifier(path, data, device):
                return found
        model, info = trained_classifier(data, epochs or default_epochs(len(data.train_x)), device)
        save_classifier(path, model, info)
    return model.eval(), {**info, "path": str(path), "trained_now": True}


def cached_classifier(path: Path, data, device):
    """(classifier, info) from `path`, or None when there is none for images of this data's shape."""
    if not path.is_file():
        return None
    model, info = load_classifier(path, device)
    if tuple(info["image_shape"]) != data.image_shape or info["num_classes"] != data.num_classes:
        return None
    return model, {**info, "path": str(path), "trained_now": False}


def trained_classifier(data, epochs: int, device="cpu"):
    """(classifier, its description) trained now on `data`."""
    started = time.perf_counter()
    model, accuracy = train_classifier(data, epochs, device=device)
    info = {
        "dataset": data.name,
        "image_shape": list(data.image_shape),
        "num_classes": data.num_classes,
        "epochs": epochs,
        "train_images": len(data.train_x),
        "test_accuracy": accuracy,
        "train_seconds": time.perf_counter() - started,
    }
    return model, info


@torch.no_grad()
def predict(classifier, images: torch.Tensor, batch_size: int = 1000):
    """(features [N, F], class probabilities [N, K]) as numpy, for float images in [0, 1]."""
    device = device_of(classifier)
    # On the CPU, channels-last batches make the poolings ~1.4x faster with bit-identical features.
    layout = torch.channels_last if device.type == "cpu" and images.dim() == 4 else torch.contiguous_format
    features, probs = [], []
    for i in range(0, len(images), batch_size):
        h = classifier.features(images[i : i + batch_size].to(device).contiguous(memory_format=layout))
        features.append(h.cpu())
        probs.append(torch.softmax(classifier.head(h), 1).cpu())
    return torch.cat(features).double().numpy(), torch.cat(probs).double().numpy()


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """||m_a - m_b||^2 + Tr(S_a + S_b - 2 (S_a S_b)^(1/2)) between Gaussians fitted to feature sets
    a [N, F] and b [M, F] (Dowson & Landau 1982; the FID of Heusel et al. 2017 uses it on
    Inception features). Tr (S_a S_b)^(1/2) = sum of the square roots of the eigenvalues of the
    symmetric S_a^(1/2) S_b S_a^(1/2), so a symmetric eigensolver suffices (no complex sqrtm)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    w, v = np.linalg.eigh(cov_a)
    root_a = (v * np.sqrt(w.clip(0))) @ v.T
    cross = np.sqrt(np.linalg.eigvalsh(root_a @ cov_b @ root_a).clip(0)).sum()
    mean_term = ((a.mean(0) - b.mean(0)) ** 2).sum()
    return float(mean_term + np.trace(cov_a) + np.trace(cov_b) - 2 * cross)


def class_balance(probs: np.ndarray) -> dict:
    """Mean confidence (max probability), the share predicted per class, and the entropy of those
    shares over log K (1: perfectly balanced, 0: one class only)."""
    k = probs.shape[1]
    shares = np.bincount(probs.argmax(1), minlength=k) / len(probs)
    entropy = -(shares[shares > 0] * np.log(shares[shares > 0])).sum() + 0.0  # + 0.0: no "-0.000"
    return {
        "mean_confidence": float(probs.max(1).mean()),
        "class_shares": shares.tolist(),
        "balance": float(entropy / np.log(k)),
    }


def sample_quality(vae, data, n: int = 10_000, seed: int = 0, epochs: int | None = None, retrain: bool = False) -> dict:
    """Classifier-feature Fréchet distance of n generated images to the test images, with the
    same distance from as many training images as a floor, and confidence and class balance."""
    from vaelab.latent import decode, sample_prior

    device = device_of(vae)
    classifier, info = get_classifier(data, epochs, device, retrain)
    z, asked = sample_prior(vae, n, seed)  # a conditional model is asked for every class equally
    images = decode(vae, z, asked)
    gen_features, gen_probs = predict(classifier, images)
    test_features, test_probs, train_features, pick = reference_features(classifier, info, data, n, seed)
    out = {
        "classifier": info,
        "samples": n,
        "test_images": len(data.test_x),
        "frechet_distance": frechet_distance(gen_features, test_features),
        "frechet_train_vs_test": frechet_distance(train_features, test_features),
        "train_images_for_floor": len(pick),
        **class_balance(gen_probs),
        "test": class_balance(test_probs),
    }
    if asked is not None:
        out["label_agreement"] = float((gen_probs.argmax(1) == asked.numpy()).mean())
    return out


REFERENCE: dict = {}  # the last data set's reference features (see reference_features)


def reference_features(classifier, info: dict, data, n: int, seed: int):
    """(test features, test probabilities, features of n training images, their indices): the
    generated images' yardsticks. They depend only on the classifier file (named by the data's
    content) and on n and seed, so a process computes them once for every run it scores or compares
    on one data set; a classifier trained anew is a new file and gets its own."""
    stat = os.stat(info["path"])
    key = (info["path"], stat.st_ino, stat.st_mtime_ns, stat.st_size, n, seed, str(device_of(classifier)))
    if key not in REFERENCE:
        test_features, test_probs = predict(classifier, to_float(data.test_x))
        pick = torch.randperm(len(data.train_x), generator=torch.Generator().manual_seed(seed))[:n]
        train_features, _ = predict(classifier, to_float(data.train_x[pick]))
        REFERENCE.clear()  # one data set's at a time: memory stays bounded in a long notebook
        REFERENCE[key] = test_features, test_probs, train_features, pick
    return REFERENCE[key]
