"""The explorer's JSON API without its web framework: the runs it shows, every input checked, and
one method per endpoint (`Explorer`).

At start-up each run is opened once (vaelab.runs.Run.open) and its test set encoded; the scatter
shows the encoder means of the same subset of (up to 5,000) test images as the report, in the same
plane (vaelab.latent: z itself for a latent size of 2, else the plane of the two leading principal
directions through z = 0), so a point of the page and of the report's figures is the same z.
Runs are addressed by their index in that start-up table, so no request ever names a file. Every
input is checked before it reaches a model; a bad one gets HTTP 4xx with
{"detail": "FIELD: what is wrong", "field": "FIELD"}. The request and response shapes are in
docs/explorer-api.md.
"""

import base64
import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from vaelab import latent, runs
from vaelab.errors import VaelabError
from vaelab.explorer.server import BadField
from vaelab.images import png_bytes, tile, to_uint8

MAX_POINTS = latent.SCATTER_POINTS  # test images on the scatter, as in the report's (figure 3)
MAX_GRID = 31  # n of the n x n manifold grid (the exercises use 15 and 31)
MAX_STEPS = 32  # images in an interpolation strip
MIN_LIMIT = 10.0  # |coordinate| bound of z and plane points; raised for runs whose data reach further


# ---- runs, loaded once at start-up -------------------------------------------------------------


@dataclass(eq=False)
class View:
    """A run as the explorer shows it: the opened run, its plane and the points of its scatter."""

    name: str
    run: runs.Run
    plane: latent.Plane
    points: dict  # plane coordinates and labels of the scatter subset's encoder means
    limit: float  # bound on every coordinate of z and of plane points
    window: list[list[float]]  # [[x_lo, x_hi], [y_lo, y_hi]]: a square around the points


def load_runs(run_dirs: list, trust_code: bool = False) -> list[View]:
    """The runs to show, each opened once (`trust_code`: see vaelab/models/custom.py)."""
    names = [Path(d).resolve().name for d in run_dirs]
    names = [n if names.count(n) == 1 else f"{n} ({i})" for i, n in enumerate(names)]
    datasets: dict = {}  # runs on the same data set share one copy
    return [load_run(Path(d), name, datasets, trust_code) for d, name in zip(run_dirs, names, strict=True)]


def load_run(run_dir: Path, name: str, datasets: dict, trust_code: bool = False) -> View:
    run = runs.Run.open(run_dir, trust_code=trust_code)
    if run.model.config.latent_dim < 2:
        raise VaelabError(
            f"{run_dir} has a latent size of {run.model.config.latent_dim}; the explorer "
            f"needs 2 or more: train with --latent-dim 2"
        )
    train = run.config["train"]
    key = (train["dataset"], train.get("data_dir"))
    if key not in datasets:
        datasets[key] = run.data
    run.data = datasets[key]
    return explorer_view(name, run)


def explorer_view(name: str, run: runs.Run) -> View:
    """The plane and scatter of an opened run, and the bounds its requests are held to."""
    mu = run.mu.astype(np.float64)
    plane = latent.latent_plane(run.mu)
    keep = latent.scatter_subset(len(mu))
    points = plane.coords(mu[keep])
    limit = float(max(MIN_LIMIT, math.ceil(2 * max(np.abs(mu).max(), np.abs(plane.coords(mu)).max()))))
    lo, hi = points.min(0), points.max(0)
    half = 0.55 * (hi - lo).max() + 1e-3  # one scale on both axes: distances on the plane stay true
    window = np.clip((lo + hi)[:, None] / 2 + [-half, half], -limit, limit).round(4).tolist()
    scatter = {
        "x": points[:, 0].round(4).tolist(),
        "y": points[:, 1].round(4).tolist(),
        "label": run.data.test_y.numpy()[keep].tolist(),
    }
    return View(name, run, plane, scatter, limit, window)


def run_info(index: int, view: View) -> dict:
    projected, run, c = view.plane.explained is not None, view.run, view.run.model.config
    return {
        "index": index,
        "name": view.name,
        "model": run.config["model"],
        "dataset": run.config["train"]["dataset"],
        "latent_dim": c.latent_dim,
        "conditional": run.conditional,
        "classes": run.classes,
        "image_shape": list(c.input_shape),
        "projection": "pca" if projected else "none",
        "explained_variance": [round(v, 4) for v in view.plane.explained] if projected else None,
        "limit": view.limit,
        "view": view.window,
        "points": len(view.points["label"]),
    }


# ---- input checks: each names the field it rejects ---------------------------------------------


def check_fields(body, allowed: tuple[str, ...], where: str = "") -> dict:
    """`body` itself, once it is a JSON object holding no field outside `allowed`."""
    if not isinstance(body, dict):
        raise BadField(where or "body", "must be a JSON object")
    unknown = sorted(set(body) - set(allowed))
    if unknown:
        name = f"{where}.{unknown[0]}" if where else unknown[0]
        raise BadField(name, f"unknown field; the fields here are {', '.join(allowed)}")
    return body


def read_int(body: dict, field: str, default: int, lo: int, hi: int) -> int:
    value = body.get(field, default)
    if type(value) is not int or not lo <= value <= hi:
        raise BadField(field, f"must be a whole number from {lo} to {hi}, got {json.dumps(value)}")
    return value


def read_numbers(value, field: str, length: int, limit: float) -> np.ndarray:
    """A list of `length` finite numbers, each within ±limit, as float64 [length]."""
    if not isinstance(value, list) or len(value) != length:
        raise BadField(field, f"must be a list of {length} numbers")
    if not all(type(v) in (int, float) for v in value):
        raise BadField(field, "must hold numbers only")
    numbers = np.asarray(value, dtype=np.float64)
    if not np.isfinite(numbers).all():
        raise BadField(field, "must be finite numbers (no NaN or infinity)")
    if np.abs(numbers).max() > limit:
        raise BadField(field, f"every value must lie within ±{limit:g} for this run, got {value}")
    return numbers


def read_latent(body: dict, view: View, where: str = "") -> np.ndarray:
    """z [latent_dim] from {"z": [...]} (a latent vector) or {"plane": [x, y]} (a scatter point)."""
    given = [key for key in ("z", "plane") if key in body]
    if len(given) != 1:
        raise BadField(
            where or "z", "give exactly one of z (a latent vector) or plane (an [x, y] point of the scatter)"
        )
    field = f"{where}.{given[0]}" if where else given[0]
    if given[0] == "z":
        return read_numbers(body["z"], field, view.run.model.config.latent_dim, view.limit)
    return view.plane.latent(read_numbers(body["plane"], field, 2, view.limit)[None])[0]


def read_label(body: dict, view: View) -> int | None:
    label, k = body.get("label"), len(view.run.classes)
    if not view.run.conditional:
        if label is not None:
            raise BadField(
                "label", f"run '{view.name}' ({view.run.config['model']}) is not conditional; leave label out"
            )
        return None
    if type(label) is not int or not 0 <= label < k:
        raise BadField(
            "label", f"run '{view.name}' is conditional: give a class index from 0 to {k - 1}, got {json.dumps(label)}"
        )
    return label


def read_image(value, view: View) -> np.ndarray:
    """[C][H][W] nested lists of numbers in [0, 1], the run's image shape, as float32."""
    shape = tuple(view.run.model.config.input_shape)
    try:
        image = np.array(value)
    except ValueError:  # ragged nesting
        image = np.array(None)
    if image.shape != shape or image.dtype.kind not in "if":
        raise BadField("image", f"must be nested lists of numbers of shape {list(shape)} (channels, rows, columns)")
    if not np.isfinite(image).all() or image.min() < 0 or image.max() > 1:
        raise BadField("image", "every pixel must be a finite number in [0, 1]")
    return image.astype(np.float32)


# ---- model calls and images ---------------------------------------------------------------------


def decode(view: View, z: np.ndarray, label: int | None) -> torch.Tensor:
    """sigmoid(decoder(z)) [B, C, H, W] in [0, 1]."""
    return latent.decode(view.run.model, z, label)


def png_url(image: np.ndarray) -> str:
    """An image [H, W] or [H, W, C] in [0, 1] (vaelab.images.tile lays them out) as a data: URL
    of a PNG."""
    return "data:image/png;base64," + base64.b64encode(png_bytes(to_uint8(image), compress_level=1)).decode()


def png_urls(images: torch.Tensor) -> list[str]:
    """Each of [B, C, H, W] images as a data: URL."""
    return [png_url(tile(images[i : i + 1], 1)) for i in range(len(images))]


def coords(values: np.ndarray) -> list:
    return np.asarray(values, dtype=np.float64).round(5).tolist()


# ---- the API: one method per endpoint, each takes the parsed JSON body ---------------------------


class Explorer:
    """The JSON API over the runs loaded at start-up: one method per endpoint, each taking the
    parsed body (or query) and returning what the response holds."""

    def __init__(self, views: list[View]):
        self.views = views

    def pick(self, body: dict) -> View:
        """The run a request names by its index in the start-up table."""
        return self.views[read_int(body, "run", 0, 0, len(self.views) - 1)]

    def info(self) -> dict:
        return {
            "runs": [run_info(i, v) for i, v in enumerate(self.views)],
            "max_grid": MAX_GRID,
            "max_steps": MAX_STEPS,
        }

    def points(self, query: dict) -> dict:
        check_fields(query, ("run",))
        text = query.get("run", "0")
        if not (text.isascii() and text.isdigit() and len(text) <= 6):  # int() of 4,301 digits raises
            raise BadField("run", f"must be a whole number from 0 to {len(self.views) - 1}, got {text!r}")
        index = int(text)
        return {"run": index, "source": "encoder mean", **self.pick({"run": index}).points}

    def decode(self, body: dict) -> dict:
        view = self.pick(check_fields(body, ("run", "z", "plane", "label")))
        z = read_latent(body, view)[None]
        (image,) = png_urls(decode(view, z, read_label(body, view)))
        return {"image": image, "z": coords(z[0]), "plane": coords(view.plane.coords(z)[0])}

    @torch.no_grad()
    def encode(self, body: dict) -> dict:
        view = self.pick(check_fields(body, ("run", "image", "label")))
        image, label = read_image(body.get("image"), view), read_label(body, view)
        y = None if label is None else torch.tensor([label])
        mu = view.run.model.encode(torch.from_numpy(image)[None], y)[0].numpy().astype(np.float64)
        return {
            "z": coords(mu[0]),
            "plane": coords(view.plane.coords(mu)[0]),
            "image": png_urls(decode(view, mu, label))[0],
        }

    def interpolate(self, body: dict) -> dict:
        view = self.pick(check_fields(body, ("run", "start", "end", "steps", "label")))
        start = read_latent(check_fields(body.get("start"), ("z", "plane"), "start"), view, "start")
        end = read_latent(check_fields(body.get("end"), ("z", "plane"), "end"), view, "end")
        z = latent.line(start, end, read_int(body, "steps", 10, 2, MAX_STEPS))  # a straight line in z (figure 7)
        images = decode(view, z, read_label(body, view))
        return {"images": png_urls(images), "plane": coords(view.plane.coords(z))}

    def grid(self, body: dict) -> dict:
        view = self.pick(check_fields(body, ("run", "n", "x_range", "y_range", "label")))
        n = read_int(body, "n", 15, 2, MAX_GRID)
        bounds = np.stack([read_range(body, field, view) for field in ("x_range", "y_range")])
        xs, ys = latent.grid_values(bounds, n)
        tiles = latent.decode_grid(view.run.model, view.plane, bounds, n, read_label(body, view))  # top row: largest y
        return {"image": png_url(tiles), "n": n, "xs": coords(xs), "ys": coords(ys[::-1])}


def read_range(body: dict, field: str, view: View) -> np.ndarray:
    default = view.window[0] if field == "x_range" else view.window[1]
    lo_hi = read_numbers(body.get(field, default), field, 2, view.limit)
    if not lo_hi[0] < lo_hi[1]:
        raise BadField(field, f"must be [low, high] with low < high, got {lo_hi.tolist()}")
    return lo_hi
