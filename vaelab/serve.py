"""The latent-space explorer: one web page and a small JSON API over one or more run folders.

    vaelab serve RUN [RUN ...] [--host 127.0.0.1] [--port 8000]

At start-up each run's model is loaded once and the encoder means of (up to 5,000 of) its test
images are computed; a latent size above 2 is shown on the plane of the two leading principal
components (scikit-learn PCA), and a point of that plane is decoded through the PCA inverse
transform. Runs are addressed by their index in that start-up table, so no request ever names a
file. Every input is checked before it reaches a model; a bad one gets HTTP 4xx with
{"detail": "FIELD: what is wrong", "field": "FIELD"}. The request and response shapes are in
docs/explorer-api.md.

The web framework (Starlette) and server (uvicorn) are the optional extra `vaelab[serve]`. They
are imported inside `create_app` and `serve` only, so `import vaelab`, the CLI and training never
need them.
"""
import argparse
import base64
import io
import json
import math
import socket
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from vaelab.errors import VaelabError

MAX_POINTS = 5_000   # test images on the scatter (SPEC.md, figure 3)
MAX_GRID = 31        # n of the n x n manifold grid (SPEC.md uses 15 and 31)
MAX_STEPS = 32       # images in an interpolation strip
MIN_LIMIT = 10.0     # |coordinate| bound of z and plane points; raised for runs whose data reach further
MAX_BODY = 1 << 20   # bytes of a request body; a 3x32x32 image as JSON is well under 100 kB
SLOW = ("interpolate", "grid")  # endpoints that decode many images: run in a worker thread
STATIC = {"/": ("explorer.html", "text/html; charset=utf-8"),
          "/explorer.js": ("explorer.js", "text/javascript; charset=utf-8"),
          "/explorer.css": ("explorer.css", "text/css; charset=utf-8")}
# The page may talk to this server only; decoded images arrive as data: URLs.
PAGE_POLICY = "default-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'"


class BadField(Exception):
    """A request field that fails its check: answered with HTTP `status` naming the field."""

    def __init__(self, field: str, problem: str, status: int = 422):
        super().__init__(f"{field}: {problem}")
        self.field, self.status = field, status


# ---- runs, loaded once at start-up -------------------------------------------------------------

@dataclass(eq=False)
class Run:
    name: str
    model: torch.nn.Module
    config: dict
    points: dict            # plane coordinates and labels of the test encoder means
    pca: object | None      # fitted sklearn PCA for a latent size above 2, else None
    limit: float            # bound on every coordinate of z and of plane points
    view: list[list[float]]  # [[x_lo, x_hi], [y_lo, y_hi]]: a square around the points

    @property
    def latent_dim(self) -> int:
        return self.model.config.latent_dim

    @property
    def classes(self) -> list[str]:
        return self.config["data"]["classes"]

    def to_plane(self, z: np.ndarray) -> np.ndarray:
        return z if self.pca is None else self.pca.transform(z)

    def from_plane(self, plane: np.ndarray) -> np.ndarray:
        return plane if self.pca is None else self.pca.inverse_transform(plane)


def load_runs(run_dirs: list) -> list[Run]:
    names = [Path(d).resolve().name for d in run_dirs]
    names = [n if names.count(n) == 1 else f"{n} ({i})" for i, n in enumerate(names)]
    datasets: dict = {}  # runs on the same data set share one copy
    return [load_run(Path(d), name, datasets) for d, name in zip(run_dirs, names)]


def load_run(run_dir: Path, name: str, datasets: dict) -> Run:
    from vaelab.data import load_dataset
    from vaelab.runs import load_model
    model, config = load_model(run_dir)
    if model.config.latent_dim < 2:
        raise VaelabError(f"{run_dir} has a latent size of {model.config.latent_dim}; the explorer "
                          f"needs 2 or more: train with --latent-dim 2")
    train = config["train"]
    key = (train["dataset"], train.get("data_dir"))
    if key not in datasets:
        datasets[key] = load_dataset(*key)
    x, y = scatter_subset(datasets[key], MAX_POINTS)
    mu = encode_means(model, x, y)
    return fit_plane(name, model, config, mu, y.numpy())


def scatter_subset(data, n: int, seed: int = 0):
    """At most n test images (uint8) and labels, a fixed random choice, as in the report's scatter."""
    keep = torch.randperm(len(data.test_x), generator=torch.Generator().manual_seed(seed))[:n].sort().values
    return data.test_x[keep], data.test_y[keep]


@torch.no_grad()
def encode_means(model, x_uint8: torch.Tensor, y: torch.Tensor, batch_size: int = 1000) -> np.ndarray:
    from vaelab.train import to_float
    labels = y if model.config.num_classes else None
    mus = [model.encode(to_float(x_uint8[i:i + batch_size]),
                        None if labels is None else labels[i:i + batch_size])[0]
           for i in range(0, len(x_uint8), batch_size)]
    return torch.cat(mus).numpy().astype(np.float64)


def fit_plane(name: str, model, config: dict, mu: np.ndarray, labels: np.ndarray) -> Run:
    pca = None
    if mu.shape[1] > 2:
        from sklearn.decomposition import PCA  # slow to import; only projected runs need it
        pca = PCA(n_components=2).fit(mu)
    plane = mu if pca is None else pca.transform(mu)
    limit = float(max(MIN_LIMIT, math.ceil(2 * max(np.abs(mu).max(), np.abs(plane).max()))))
    lo, hi = plane.min(0), plane.max(0)
    half = 0.55 * (hi - lo).max() + 1e-3  # one scale on both axes: distances on the plane stay true
    view = np.clip((lo + hi)[:, None] / 2 + [-half, half], -limit, limit).round(4).tolist()
    points = {"x": plane[:, 0].round(4).tolist(), "y": plane[:, 1].round(4).tolist(),
              "label": labels.tolist()}
    return Run(name, model, config, points, pca, limit, view)


def run_info(index: int, run: Run) -> dict:
    pca = run.pca
    return {"index": index, "name": run.name, "model": run.config["model"],
            "dataset": run.config["train"]["dataset"], "latent_dim": run.latent_dim,
            "conditional": bool(run.model.config.num_classes), "classes": run.classes,
            "image_shape": list(run.model.config.input_shape),
            "projection": "none" if pca is None else "pca",
            "explained_variance": None if pca is None else pca.explained_variance_ratio_.round(4).tolist(),
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

@torch.no_grad()
def decode(run: Run, z: np.ndarray, label: int | None) -> np.ndarray:
    """sigmoid(decoder(z)) as float32 [B, C, H, W] in [0, 1]."""
    y = None if label is None else torch.full((len(z),), label)
    return torch.sigmoid(run.model.decode(torch.as_tensor(z, dtype=torch.float32), y)).numpy()


def png_url(image: np.ndarray) -> str:
    """A [C, H, W] image in [0, 1] as a data: URL of a PNG."""
    from PIL import Image
    pixels = (image * 255).round().astype(np.uint8)
    pixels = pixels[0] if len(pixels) == 1 else pixels.transpose(1, 2, 0)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG", compress_level=1)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def tile(images: np.ndarray, n: int) -> np.ndarray:
    """[n*n, C, H, W] -> [C, n*H, n*W], row by row."""
    _, c, h, w = images.shape
    return images.reshape(n, n, c, h, w).transpose(2, 0, 3, 1, 4).reshape(c, n * h, n * w)


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
        image = decode(run, z, read_label(body, run))[0]
        return {"image": png_url(image), "z": coords(z[0]), "plane": coords(run.to_plane(z)[0])}

    @torch.no_grad()
    def encode(self, body: dict) -> dict:
        run = self.run(check_fields(body, ("run", "image", "label")))
        image, label = read_image(body.get("image"), run), read_label(body, run)
        y = None if label is None else torch.tensor([label])
        mu = run.model.encode(torch.from_numpy(image)[None], y)[0].numpy().astype(np.float64)
        return {"z": coords(mu[0]), "plane": coords(run.to_plane(mu)[0]),
                "image": png_url(decode(run, mu, label)[0])}

    def interpolate(self, body: dict) -> dict:
        run = self.run(check_fields(body, ("run", "start", "end", "steps", "label")))
        start = read_latent(check_fields(body.get("start"), ("z", "plane"), "start"), run, "start")
        end = read_latent(check_fields(body.get("end"), ("z", "plane"), "end"), run, "end")
        t = np.linspace(0, 1, read_int(body, "steps", 10, 2, MAX_STEPS))[:, None]
        z = (1 - t) * start + t * end  # a straight line in z (SPEC.md, figure 7)
        images = decode(run, z, read_label(body, run))
        return {"images": [png_url(im) for im in images], "plane": coords(run.to_plane(z))}

    def grid(self, body: dict) -> dict:
        run = self.run(check_fields(body, ("run", "n", "x_range", "y_range", "label")))
        n = read_int(body, "n", 15, 2, MAX_GRID)
        ranges = [read_range(body, field, run) for field in ("x_range", "y_range")]
        xs, ys = np.linspace(*ranges[0], n), np.linspace(*ranges[1], n)[::-1]  # top row: largest y
        plane = np.stack(np.meshgrid(xs, ys), -1).reshape(-1, 2)
        images = decode(run, run.from_plane(plane), read_label(body, run))
        return {"image": png_url(tile(images, n)), "n": n, "xs": coords(xs), "ys": coords(ys)}


def read_range(body: dict, field: str, run: Run) -> np.ndarray:
    default = run.view[0] if field == "x_range" else run.view[1]
    lo_hi = read_numbers(body.get(field, default), field, 2, run.limit)
    if not lo_hi[0] < lo_hi[1]:
        raise BadField(field, f"must be [low, high] with low < high, got {lo_hi.tolist()}")
    return lo_hi


# ---- the web app ---------------------------------------------------------------------------------

def create_app(runs: list[Run]):
    """The Starlette app serving the page and /api/... over `runs` (from `load_runs`)."""
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
    return Starlette(routes=routes, exception_handlers={BadField: refuse})


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


async def read_body(request):
    size = 0
    chunks = []
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY:
            raise BadField("body", f"larger than {MAX_BODY // 1024} kB; send one image or a few numbers", 413)
        chunks.append(chunk)
    try:
        return json.loads(b"".join(chunks))
    except (ValueError, UnicodeDecodeError) as e:
        raise BadField("body", f"is not valid JSON ({e})", 400) from None


# ---- the command --------------------------------------------------------------------------------

def add_serve_parser(subparsers) -> None:
    p = subparsers.add_parser("serve", help="open the latent-space explorer (a web page) for one or more runs")
    p.add_argument("runs", nargs="+", metavar="RUN",
                   help="run folders; the page has a run picker when there are several")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1, this machine only)")
    p.add_argument("--port", type=port_number, default=8000, help="TCP port (default: 8000; 0 picks a free one)")
    p.set_defaults(handler=lambda args: serve(args.runs, args.host, args.port))


def port_number(text: str) -> int:
    if not text.isdigit() or int(text) > 65535:
        raise argparse.ArgumentTypeError(f"expected a port number from 0 to 65535, got {text!r}")
    return int(text)


def serve(run_dirs: list, host: str = "127.0.0.1", port: int = 8000) -> None:
    """Load the runs, print the address, and serve until Ctrl-C."""
    try:
        import starlette  # noqa: F401 (create_app's framework)
        import uvicorn
    except ImportError:
        raise VaelabError("the explorer needs its web server: pip install 'vaelab[serve]'") from None
    with listen(host, port) as sock:  # before the runs load, so a busy port fails at once
        torch.set_num_threads(1)  # single decodes are latency-bound; more threads only add hand-offs
        app = create_app(load_runs(run_dirs))
        print(f"vaelab explorer: {address(sock)}  (Ctrl-C stops it)", flush=True)
        try:
            uvicorn.Server(uvicorn.Config(app, log_level="warning")).run(sockets=[sock])
        except KeyboardInterrupt:  # uvicorn re-raises the Ctrl-C it handled; stopping is the intent
            print("vaelab explorer: stopped")


def listen(host: str, port: int) -> socket.socket:
    """A listening TCP socket. Its protocol is set to TCP explicitly: asyncio then turns Nagle's
    algorithm off per connection, which otherwise holds each small response back by ~40 ms."""
    try:
        family, kind, proto, _, where = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                                           flags=socket.AI_PASSIVE)[0]
        sock = socket.socket(family, kind, proto)
    except OSError as e:
        raise VaelabError(f"cannot listen on {host}:{port} ({e.strerror or e}); check --host") from None
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(where)
        sock.listen()
    except OSError as e:
        sock.close()
        raise VaelabError(f"cannot listen on {host}:{port} ({e.strerror or e}); "
                          f"pick another --port or --host") from None
    return sock


def address(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}/" if ":" in host else f"http://{host}:{port}/"
