"""The latent-space explorer: one web page and a small JSON API over one or more run folders.

    vaelab serve RUN [RUN ...] [--host 127.0.0.1] [--port 8000]

At start-up each run is opened once (vaelab.runs.open_run) and its test set encoded; the scatter
shows the encoder means of the same subset of (up to 5,000) test images as the report, in the same
plane (vaelab.latent: z itself for a latent size of 2, else the plane of the two leading principal
directions through z = 0), so a point of the page and of the report's figures is the same z.
Runs are addressed by their index in that start-up table, so no request ever names a file. Every input is checked before it reaches a model; a bad one gets HTTP 4xx with
{"detail": "FIELD: what is wrong", "field": "FIELD"}. The request and response shapes are in
docs/explorer-api.md.

What every request must pass before it reaches the API (its Host and Origin, JSON bodies only,
size, nesting and time limits, a cap on connections) and the headers of every response are in
vaelab/server.py.

The web framework (Starlette) and server (uvicorn) are the optional extra `vaelab[serve]`. They
are imported inside `create_app` and `serve` only, so `import vaelab`, the CLI and training never
need them.
"""
import base64
import json
import math
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from vaelab import latent, runs
from vaelab.errors import VaelabError
from vaelab.images import png_bytes, tile, to_uint8
from vaelab.server import (MAX_BODY, BadField, Guard, address, allowed_hosts, guarded_protocol,  # noqa: F401
                           is_loopback, listen, read_body)

MAX_POINTS = latent.SCATTER_POINTS  # test images on the scatter, as in the report's (figure 3)
MAX_GRID = 31        # n of the n x n manifold grid (the exercises use 15 and 31)
MAX_STEPS = 32       # images in an interpolation strip
MIN_LIMIT = 10.0     # |coordinate| bound of z and plane points; raised for runs whose data reach further
SLOW = ("interpolate", "grid")  # endpoints that decode many images: run in a worker thread
STATIC = {"/": ("explorer.html", "text/html; charset=utf-8"),
          "/explorer.js": ("explorer.js", "text/javascript; charset=utf-8"),
          "/explorer.css": ("explorer.css", "text/css; charset=utf-8")}
# The page may talk to this server only; decoded images arrive as data: URLs.
PAGE_POLICY = "default-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'; frame-ancestors 'none'"


# ---- runs, loaded once at start-up -------------------------------------------------------------

@dataclass(eq=False)
class Run:
    """A run as the explorer shows it: the opened run, its plane and the points of its scatter."""
    name: str
    run: runs.Run
    plane: latent.Plane
    points: dict            # plane coordinates and labels of the scatter subset's encoder means
    limit: float            # bound on every coordinate of z and of plane points
    view: list[list[float]]  # [[x_lo, x_hi], [y_lo, y_hi]]: a square around the points

    @property
    def model(self) -> torch.nn.Module:
        return self.run.model

    @property
    def config(self) -> dict:
        return self.run.config

    @property
    def latent_dim(self) -> int:
        return self.model.config.latent_dim

    @property
    def classes(self) -> list[str]:
        return self.run.classes

    def to_plane(self, z: np.ndarray) -> np.ndarray:
        return self.plane.coords(z)

    def from_plane(self, points: np.ndarray) -> np.ndarray:
        return self.plane.latent(points)


def load_runs(run_dirs: list) -> list[Run]:
    names = [Path(d).resolve().name for d in run_dirs]
    names = [n if names.count(n) == 1 else f"{n} ({i})" for i, n in enumerate(names)]
    datasets: dict = {}  # runs on the same data set share one copy
    return [load_run(Path(d), name, datasets) for d, name in zip(run_dirs, names)]


def load_run(run_dir: Path, name: str, datasets: dict) -> Run:
    run = runs.open_run(run_dir)
    if run.model.config.latent_dim < 2:
        raise VaelabError(f"{run_dir} has a latent size of {run.model.config.latent_dim}; the explorer "
                          f"needs 2 or more: train with --latent-dim 2")
    train = run.config["train"]
    key = (train["dataset"], train.get("data_dir"))
    if key not in datasets:
        datasets[key] = run.data
    run.data = datasets[key]
    return explorer_run(name, run)


def explorer_run(name: str, run: runs.Run) -> Run:
    """The plane and scatter of an opened run, and the bounds its requests are held to."""
    mu = run.mu.astype(np.float64)
    plane = latent.latent_plane(run.mu)
    keep = latent.scatter_subset(len(mu))
    points = plane.coords(mu[keep])
    limit = float(max(MIN_LIMIT, math.ceil(2 * max(np.abs(mu).max(), np.abs(plane.coords(mu)).max()))))
    lo, hi = points.min(0), points.max(0)
    half = 0.55 * (hi - lo).max() + 1e-3  # one scale on both axes: distances on the plane stay true
    view = np.clip((lo + hi)[:, None] / 2 + [-half, half], -limit, limit).round(4).tolist()
    scatter = {"x": points[:, 0].round(4).tolist(), "y": points[:, 1].round(4).tolist(),
               "label": run.data.test_y.numpy()[keep].tolist()}
    return Run(name, run, plane, scatter, limit, view)


def run_info(index: int, run: Run) -> dict:
    projected = run.plane.explained is not None
    return {"index": index, "name": run.name, "model": run.config["model"],
            "dataset": run.config["train"]["dataset"], "latent_dim": run.latent_dim,
            "conditional": bool(run.model.config.num_classes), "classes": run.classes,
            "image_shape": list(run.model.config.input_shape),
            "projection": "pca" if projected else "none",
            "explained_variance": [round(v, 4) for v in run.plane.explained] if projected else None,
            "limit": run.limit, "view": run.view, "points": len(run.points["label"])}


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


def read_latent(body: dict, run: Run, where: str = "") -> np.ndarray:
    """z [latent_dim] from {"z": [...]} (a latent vector) or {"plane": [x, y]} (a scatter point)."""
    given = [key for key in ("z", "plane") if key in body]
    if len(given) != 1:
        raise BadField(where or "z", "give exactly one of z (a latent vector) or plane "
                                     "(an [x, y] point of the scatter)")
    field = f"{where}.{given[0]}" if where else given[0]
    if given[0] == "z":
        return read_numbers(body["z"], field, run.latent_dim, run.limit)
    return run.from_plane(read_numbers(body["plane"], field, 2, run.limit)[None])[0]


def read_label(body: dict, run: Run) -> int | None:
    label, k = body.get("label"), len(run.classes)
    if not run.model.config.num_classes:
        if label is not None:
            raise BadField("label", f"run '{run.name}' ({run.config['model']}) is not conditional; leave label out")
        return None
    if type(label) is not int or not 0 <= label < k:
        raise BadField("label", f"run '{run.name}' is conditional: give a class index from 0 to {k - 1}, "
                                f"got {json.dumps(label)}")
    return label


def read_image(value, run: Run) -> np.ndarray:
    """[C][H][W] nested lists of numbers in [0, 1], the run's image shape, as float32."""
    shape = tuple(run.model.config.input_shape)
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

def decode(run: Run, z: np.ndarray, label: int | None) -> torch.Tensor:
    """sigmoid(decoder(z)) [B, C, H, W] in [0, 1]."""
    return latent.decode(run.model, z, label)


def png_url(image: np.ndarray) -> str:
    """An image [H, W] or [H, W, C] in [0, 1] (vaelab.images.tile lays them out) as a data: URL
    of a PNG."""
    return "data:image/png;base64," + base64.b64encode(png_bytes(to_uint8(image), compress_level=1)).decode()


def png_urls(images: torch.Tensor) -> list[str]:
    """Each of [B, C, H, W] images as a data: URL."""
    return [png_url(tile(images[i:i + 1], 1)) for i in range(len(images))]


def coords(values: np.ndarray) -> list:
    return np.asarray(values, dtype=np.float64).round(5).tolist()


# ---- the API: one method per endpoint, each takes the parsed JSON body ---------------------------

class Explorer:
    def __init__(self, runs: list[Run]):
        self.runs = runs

    def run(self, body: dict) -> Run:
        return self.runs[read_int(body, "run", 0, 0, len(self.runs) - 1)]

    def info(self) -> dict:
        return {"runs": [run_info(i, r) for i, r in enumerate(self.runs)],
                "max_grid": MAX_GRID, "max_steps": MAX_STEPS}

    def points(self, query: dict) -> dict:
        check_fields(query, ("run",))
        text = query.get("run", "0")
        if not (text.isascii() and text.isdigit()):
            raise BadField("run", f"must be a whole number from 0 to {len(self.runs) - 1}, got {text!r}")
        index = int(text)
        run = self.run({"run": index})
        return {"run": index, "source": "encoder mean", **run.points}

    def decode(self, body: dict) -> dict:
        run = self.run(check_fields(body, ("run", "z", "plane", "label")))
        z = read_latent(body, run)[None]
        image, = png_urls(decode(run, z, read_label(body, run)))
        return {"image": image, "z": coords(z[0]), "plane": coords(run.to_plane(z)[0])}

    @torch.no_grad()
    def encode(self, body: dict) -> dict:
        run = self.run(check_fields(body, ("run", "image", "label")))
        image, label = read_image(body.get("image"), run), read_label(body, run)
        y = None if label is None else torch.tensor([label])
        mu = run.model.encode(torch.from_numpy(image)[None], y)[0].numpy().astype(np.float64)
        return {"z": coords(mu[0]), "plane": coords(run.to_plane(mu)[0]),
                "image": png_urls(decode(run, mu, label))[0]}

    def interpolate(self, body: dict) -> dict:
        run = self.run(check_fields(body, ("run", "start", "end", "steps", "label")))
        start = read_latent(check_fields(body.get("start"), ("z", "plane"), "start"), run, "start")
        end = read_latent(check_fields(body.get("end"), ("z", "plane"), "end"), run, "end")
        z = latent.line(start, end, read_int(body, "steps", 10, 2, MAX_STEPS))  # a straight line in z (figure 7)
        images = decode(run, z, read_label(body, run))
        return {"images": png_urls(images), "plane": coords(run.to_plane(z))}

    def grid(self, body: dict) -> dict:
        run = self.run(check_fields(body, ("run", "n", "x_range", "y_range", "label")))
        n = read_int(body, "n", 15, 2, MAX_GRID)
        bounds = np.stack([read_range(body, field, run) for field in ("x_range", "y_range")])
        xs, ys = latent.grid_values(bounds, n)
        tiles = latent.decode_grid(run.model, run.plane, bounds, n, read_label(body, run))  # top row: largest y
        return {"image": png_url(tiles), "n": n, "xs": coords(xs), "ys": coords(ys[::-1])}


def read_range(body: dict, field: str, run: Run) -> np.ndarray:
    default = run.view[0] if field == "x_range" else run.view[1]
    lo_hi = read_numbers(body.get(field, default), field, 2, run.limit)
    if not lo_hi[0] < lo_hi[1]:
        raise BadField(field, f"must be [low, high] with low < high, got {lo_hi.tolist()}")
    return lo_hi


# ---- the web app ---------------------------------------------------------------------------------

def create_app(runs: list[Run], hosts: tuple[str, ...] | None = None):
    """The Starlette app serving the page and /api/... over `runs` (from `load_runs`); with `hosts`,
    only requests whose Host header names one of them, or the address they arrived at, are answered."""
    from starlette.applications import Starlette
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    explorer = Explorer(runs)
    static = Path(__file__).parent / "static"
    routes = [Route(path, page((static / name).read_bytes(), kind)) for path, (name, kind) in STATIC.items()]
    routes += [Route("/api/info", lambda request: JSONResponse(explorer.info())),
               Route("/api/points", lambda request: JSONResponse(explorer.points(dict(request.query_params))))]
    routes += [Route(f"/api/{name}", json_endpoint(getattr(explorer, name), name in SLOW), methods=["POST"])
               for name in ("decode", "encode", "interpolate", "grid")]

    def refuse(request, error: BadField):
        return JSONResponse({"detail": str(error), "field": error.field}, status_code=error.status)
    return Guard(Starlette(routes=routes, exception_handlers={BadField: refuse}), hosts)


def page(content: bytes, kind: str):
    from starlette.responses import Response

    def endpoint(request):
        return Response(content, media_type=kind, headers={"Content-Security-Policy": PAGE_POLICY})
    return endpoint


def json_endpoint(method, in_thread: bool):
    """POST endpoint: a capped JSON body in, `method(body)` out. A decode or encode (about a
    millisecond) runs on the event loop: handing it to a thread costs more than it takes. A grid or
    interpolation runs in a worker thread (torch lets go of the GIL), so it never stalls them."""
    from starlette.concurrency import run_in_threadpool
    from starlette.responses import JSONResponse

    async def endpoint(request):
        body = await read_body(request)
        return JSONResponse(await run_in_threadpool(method, body) if in_thread else method(body))
    return endpoint


# ---- the server ------------------------------------------------------------------------------------

def serve(run_dirs: list, host: str = "127.0.0.1", port: int = 8000) -> None:
    """Load the runs, print the address, and serve until Ctrl-C."""
    try:
        import starlette  # noqa: F401 (create_app's framework)
        import uvicorn
    except ImportError:
        raise VaelabError("the explorer needs its web server: pip install 'vaelab[serve]'") from None
    with listen(host, port) as sock:  # before the runs load, so a busy port fails at once
        torch.set_num_threads(1)  # single decodes are latency-bound; more threads only add hand-offs
        app = create_app(load_runs(run_dirs), allowed_hosts(host, sock))
        print(f"vaelab explorer: {address(sock)}  (Ctrl-C stops it)", flush=True)
        if not is_loopback(sock.getsockname()[0]):
            print(f"vaelab explorer: warning: listening on {host}, so anyone who can reach this machine can use "
                  f"the explorer, which has no login; --host 127.0.0.1 keeps it to this machine", file=sys.stderr, flush=True)
        config = uvicorn.Config(app, log_level="warning", http=guarded_protocol(), timeout_keep_alive=5)
        try:
            uvicorn.Server(config).run(sockets=[sock])
        except KeyboardInterrupt:  # uvicorn re-raises the Ctrl-C it handled; stopping is the intent
            print("vaelab explorer: stopped")


