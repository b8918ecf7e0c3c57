"""The explorer's HTTP server: the listening socket and what every request must pass.

Only requests that name the server are answered (the Host header: this machine's names, --host,
or the address the request arrived at), so a web page cannot reach it through DNS rebinding; a
request from another site's page (its Origin) is refused. POST bodies must be JSON (a cross-site
form or text/plain POST, which a browser sends without asking first, is refused), at most MAX_BODY
bytes, nested at most MAX_DEPTH deep, and arrive within BODY_SECONDS; every request head must
arrive within HEAD_SECONDS of the connection (or of the previous response); at most
MAX_CONNECTIONS are open at once, MAX_PER_CLIENT from one address: a new connection beyond a cap
closes the connection that has waited longest for its client (idle, or a head or body not all
sent; of that address, for its own cap), so idle or stalled connections cannot lock anyone out;
only when every one is being answered is it refused.
Every response forbids framing and content sniffing.
A request that fails gets HTTP 4xx with {"detail": ..., "field": ...}, as the API's own checks.
"""

import asyncio
import ipaddress
import json
import socket

from vaelab.errors import VaelabError

MAX_BODY = 1 << 20  # bytes of a request body; a 3x32x32 image as JSON is well under 100 kB
MAX_DEPTH = 8  # nesting of a request's JSON: an image is 4 levels deep
HEAD_SECONDS = 10.0  # a connection must send its request head within this time
BODY_SECONDS = 10.0  # ... and its body within this time
MAX_CONNECTIONS = 64  # open connections in all
MAX_PER_CLIENT = 32  # open connections from one address
LOCAL_NAMES = ("localhost", "127.0.0.1", "::1")
SAFE_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"cross-origin-resource-policy", b"same-origin"),
    (b"content-security-policy", b"frame-ancestors 'none'"),
]


class BadField(Exception):
    """A request field that fails its check: answered with HTTP `status` naming the field."""

    def __init__(self, field: str, problem: str, status: int = 422):
        super().__init__(f"{field}: {problem}")
        self.field, self.status = field, status


class Guard:
    """ASGI middleware: the Host and Origin checks, and the safety headers on every response."""

    def __init__(self, app, hosts: tuple[str, ...] | None):
        self.app, self.hosts = app, None if hosts is None else {h.lower().rstrip(".") for h in hosts}

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        field, problem = self.problem(headers, scope.get("server"))

        async def send_safely(message):
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), *SAFE_HEADERS]}
            await send(message)

        if problem:
            from starlette.responses import JSONResponse

            response = JSONResponse(
                {"detail": f"{field}: {problem}", "field": field}, status_code=403 if field == "origin" else 400
            )
            return await response(scope, receive, send_safely)
        await self.app(scope, receive, send_safely)

    def problem(self, headers: dict, server) -> tuple[str, str | None]:
        """(header, what is wrong with it), or (_, None)."""
        if self.hosts is None:
            return "", None
        allowed = self.hosts | ({server[0].lower()} if server else set())
        if host_name(headers.get("host", "")) not in allowed:
            return "host", (
                f"{headers.get('host', '')!r} is not this explorer's address; open it as "
                f"http://localhost:PORT/ or by the address it printed"
            )
        origin = headers.get("origin")
        if origin is not None and not same_origin(origin, allowed, server[1] if server else None):
            return "origin", f"{origin!r} is another site; the explorer answers its own page only"
        return "", None


def same_origin(origin: str, hosts: set, port: int | None) -> bool:
    """Whether a page's Origin is the explorer's own: scheme http, one of its host names and its port
    (another local site, http://localhost:9999, is another origin)."""
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(origin)
        origin_port = parts.port or 80
    except ValueError:
        return False
    if parts.username is not None or parts.password is not None or parts.path or parts.query or parts.fragment:
        return False  # a browser's Origin is scheme://host[:port] and nothing else
    return parts.scheme == "http" and (parts.hostname or "").rstrip(".") in hosts and origin_port == port


def host_name(value: str) -> str:
    """The host part of a Host header ("localhost:8000" -> "localhost", "[::1]:80" -> "::1")."""
    value = value.strip().lower()
    if value.startswith("["):
        return value[1 : value.find("]")] if "]" in value else value
    return (value.rsplit(":", 1)[0] if value.count(":") == 1 else value).rstrip(".")


async def read_body(request):
    """The request's JSON body: Content-Type application/json (a cross-site page cannot send that
    without asking first), at most MAX_BODY bytes (refused from Content-Length when it says more),
    within BODY_SECONDS, nested at most MAX_DEPTH deep."""
    announced = request.headers.get("content-length", "0")
    if not announced.isdigit() or int(announced) > MAX_BODY:
        raise BadField("body", f"larger than {MAX_BODY // 1024} kB; send one image or a few numbers", 413)
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind != "application/json":
        raise BadField("content-type", f"must be application/json, got {kind or 'none'!r}", 415)
    try:
        raw = await asyncio.wait_for(read_capped(request), BODY_SECONDS)
    except TimeoutError:
        raise BadField("body", f"did not arrive within {BODY_SECONDS:g} s", 408) from None
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError) as e:
        raise BadField("body", f"is not valid JSON ({str(e)[:80] or 'nested too deeply'})", 400) from None
    if too_deep(body, MAX_DEPTH):
        raise BadField("body", f"is nested more than {MAX_DEPTH} levels deep; an image is 4", 400)
    return body


async def read_capped(request) -> bytes:
    from starlette.requests import ClientDisconnect

    size, chunks = 0, []
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > MAX_BODY:
                raise BadField("body", f"larger than {MAX_BODY // 1024} kB; send one image or a few numbers", 413)
            chunks.append(chunk)
    except ClientDisconnect:  # the client left (or was closed to make room) before its body was sent
        raise BadField("body", "the connection closed before the body arrived", 400) from None
    return b"".join(chunks)


def too_deep(value, limit: int) -> bool:
    """Whether JSON `value` nests lists or objects more than `limit` levels deep (no recursion)."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, (list, dict)):
            if depth > limit:
                return True
            stack.extend((v, depth + 1) for v in (item.values() if isinstance(item, dict) else item))
    return False


def is_loopback(address: str) -> bool:
    try:
        return ipaddress.ip_address(address.split("%")[0]).is_loopback
    except ValueError:
        return False


def allowed_hosts(host: str, sock: socket.socket) -> tuple[str, ...]:
    """The names a request may give in its Host header: this machine's local names, --host, and,
    when listening beyond this machine, its host names (its addresses are allowed as they arrive)."""
    names = [*LOCAL_NAMES, host]
    if not is_loopback(sock.getsockname()[0]):
        names += [socket.gethostname(), socket.getfqdn()]
    return tuple(n for n in names if n and n not in ("0.0.0.0", "::"))


def guarded_protocol():
    """uvicorn's HTTP/1.1 protocol with a deadline on each request head and caps on open connections
    that close a waiting connection before they refuse a new one."""
    import h11
    from uvicorn.protocols.http.h11_impl import H11Protocol

    class Guarded(H11Protocol):
        timer = None

        def connection_made(self, transport):
            self.peer = (transport.get_extra_info("peername") or ("?",))[0]
            self.refused, self.heard = False, self.loop.time()
            mine = [c for c in self.connections if getattr(c, "peer", None) == self.peer]
            for crowd, cap in ((mine, MAX_PER_CLIENT), (list(self.connections), MAX_CONNECTIONS)):
                if len(crowd) >= cap and not self.make_room(crowd):
                    self.transport, self.refused = transport, True
                    transport.close()
                    return
            super().connection_made(transport)
            self.arm()

        def make_room(self, crowd) -> bool:
            """Close the connection of `crowd` that has waited longest for its client (see `waiting`);
            one already closing makes room by itself."""
            if any(c.transport.is_closing() for c in crowd):
                return True
            waiting = [c for c in crowd if c.waiting()]
            if not waiting:
                return False
            min(waiting, key=lambda c: c.heard).transport.close()
            return True

        def waiting(self) -> bool:
            """Waiting for its client, not for the explorer: connected or kept alive with at most part of a
            request head sent, or a request whose body has not all arrived (a stalled body holds a
            connection as long as an idle one would, so it cannot lock anyone out either)."""
            return self.conn.their_state in (h11.IDLE, h11.SEND_BODY) and self.conn.our_state in (
                h11.IDLE,
                h11.SEND_RESPONSE,
            )

        def arm(self):
            self.timer = self.loop.call_later(HEAD_SECONDS, self.too_slow)

        def too_slow(self):
            self.timer = None
            if not self.transport.is_closing():
                self.transport.close()

        def data_received(self, data):
            self.heard = self.loop.time()
            super().data_received(data)
            if self.timer is not None and self.conn.their_state is not h11.IDLE:
                self.timer.cancel()
                self.timer = None

        def on_response_complete(self):
            super().on_response_complete()
            self.heard = self.loop.time()
            if self.timer is None and not self.transport.is_closing():
                self.arm()  # the next request on this connection gets its own deadline

        def connection_lost(self, exc):
            if self.timer is not None:
                self.timer.cancel()
            if not self.refused:
                super().connection_lost(exc)

    return Guarded


def listen(host: str, port: int) -> socket.socket:
    """A listening TCP socket. Its protocol is set to TCP explicitly: asyncio then turns Nagle's
    algorithm off per connection, which otherwise holds each small response back by ~40 ms."""
    try:
        family, kind, proto, _, where = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
        sock = socket.socket(family, kind, proto)
    except OSError as e:
        raise VaelabError(f"cannot listen on {host}:{port} ({e.strerror or e}); check --host") from None
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(where)
        sock.listen()
    except OSError as e:
        sock.close()
        raise VaelabError(
            f"cannot listen on {host}:{port} ({e.strerror or e}); pick another --port or --host"
        ) from None
    return sock


def address(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}/" if ":" in host else f"http://{host}:{port}/"
