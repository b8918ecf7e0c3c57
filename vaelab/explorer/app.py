"""The explorer's web app: the page and the JSON API (api.py) on Starlette, served by uvicorn.

    vaelab serve RUN [RUN ...] [--host 127.0.0.1] [--port 8000]

What every request must pass before it reaches the API (its Host and Origin, JSON bodies only,
size, nesting and time limits, a cap on connections) and the headers of every response are in
server.py. The web framework (Starlette) and server (uvicorn) are the optional extra
`vaelab[serve]`. They are imported inside `create_app` and `serve` only, so `import vaelab`, the
CLI and training never need them.
"""

import logging
from pathlib import Path

import torch

from vaelab.errors import VaelabError
from vaelab.explorer.api import Explorer, View, load_runs
from vaelab.explorer.server import (
    BadField,
    Guard,
    address,
    allowed_hosts,
    guarded_protocol,
    is_loopback,
    listen,
    read_body,
)

log = logging.getLogger(__name__)
SLOW = ("interpolate", "grid")  # endpoints that decode many images: run in a worker thread
STATIC = {
    "/": ("explorer.html", "text/html; charset=utf-8"),
    "/explorer.js": ("explorer.js", "text/javascript; charset=utf-8"),
    "/explorer.css": ("explorer.css", "text/css; charset=utf-8"),
}
# The page may talk to this server only; decoded images arrive as data: URLs.
PAGE_POLICY = "default-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'; frame-ancestors 'none'"


# ---- the web app ---------------------------------------------------------------------------------


def create_app(views: list[View], hosts: tuple[str, ...] | None = None):
    """The Starlette app serving the page and /api/... over `views` (from `load_runs`); with `hosts`,
    only requests whose Host header names one of them, or the address they arrived at, are answered."""
    from starlette.applications import Starlette
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    explorer = Explorer(views)
    static = Path(__file__).parent / "static"
    routes = [Route(path, page((static / name).read_bytes(), kind)) for path, (name, kind) in STATIC.items()]
    routes += [
        Route("/api/info", lambda request: JSONResponse(explorer.info())),
        Route("/api/points", lambda request: JSONResponse(explorer.points(dict(request.query_params)))),
    ]
    routes += [
        Route(f"/api/{name}", json_endpoint(getattr(explorer, name), name in SLOW), methods=["POST"])
        for name in ("decode", "encode", "interpolate", "grid")
    ]

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


def serve(run_dirs: list, host: str = "127.0.0.1", port: int = 8000, trust_code: bool = False) -> None:
    """Load the runs, print the address, and serve until Ctrl-C (`trust_code`: see vaelab/models/custom.py)."""
    try:
        import starlette  # noqa: F401 (create_app's framework)
        import uvicorn  # noqa: F401 (_serve's server)
    except ImportError:
        raise VaelabError("the explorer needs its web server: pip install 'vaelab[serve]'") from None
    threads = torch.get_num_threads()  # given back at the end: a notebook's training must not stay on one
    try:
        with listen(host, port) as sock:  # before the runs load, so a busy port fails at once
            torch.set_num_threads(1)  # single decodes are latency-bound; more threads only add hand-offs
            _serve(sock, host, load_runs(run_dirs, trust_code))
    finally:
        torch.set_num_threads(threads)


def _serve(sock, host: str, runs) -> None:
    import uvicorn

    app = create_app(runs, allowed_hosts(host, sock))
    log.info(f"vaelab explorer: {address(sock)}  (Ctrl-C stops it)")
    if not is_loopback(sock.getsockname()[0]):
        log.warning(
            f"vaelab explorer: warning: listening on {host}, so anyone who can reach this machine can use "
            f"the explorer, which has no login; --host 127.0.0.1 keeps it to this machine"
        )
    config = uvicorn.Config(app, log_level="warning", http=guarded_protocol(), timeout_keep_alive=5)
    try:
        uvicorn.Server(config).run(sockets=[sock])
    except KeyboardInterrupt:  # uvicorn re-raises the Ctrl-C it handled; stopping is the intent
        log.info("vaelab explorer: stopped")
