"""The explorer's server answers its own page only, takes JSON only, and no client can hold it:
Host and Origin checks, content types, JSON nesting, announced and slow bodies, slow or idle
connections, a cap on connections, and safety headers on every response. Through Starlette's test
client, and a real uvicorn server spoken to over raw sockets."""

import json
import socket
import subprocess
import sys
import threading
import time

import pytest
from starlette.testclient import TestClient

from vaelab import explorer
from vaelab.explorer import server

LOCAL = ("localhost", "127.0.0.1", "::1")


@pytest.fixture(scope="module")
def loaded(untrained_run):
    return explorer.load_runs([untrained_run])


@pytest.fixture(scope="module")
def client(loaded):
    return TestClient(explorer.create_app(loaded, LOCAL), base_url="http://localhost:8000")


def post(client, body: bytes, kind: str | None = "application/json", **headers):
    return client.post("/api/decode", content=body, headers={**({"Content-Type": kind} if kind else {}), **headers})


# ---- through the test client ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "host,status",
    [
        ("localhost:8000", 200),
        ("127.0.0.1:8000", 200),
        ("[::1]:8000", 200),
        ("LOCALHOST.", 200),
        ("evil.example", 400),
        ("evil.example:8000", 400),
        ("localhost.evil.example", 400),
        ("", 400),
    ],
)
def test_only_requests_that_name_this_server_are_answered(client, host, status):
    response = client.get("/api/info", headers={"Host": host})
    assert response.status_code == status, response.text
    if status == 400:
        assert response.json()["field"] == "host" and "not this explorer's address" in response.json()["detail"]


@pytest.mark.parametrize(
    "origin,status",
    [
        ("http://localhost:8000", 200),
        ("http://evil.example", 403),
        ("null", 403),
        ("http://localhost:9999", 403),  # another local site: the port is part of the origin
        ("https://localhost:8000", 403),
        ("http://localhost", 403),
        ("http://evil@localhost:8000", 403),  # a browser's Origin never has a user, a path or a query
        ("http://localhost:8000/page", 403),
    ],
)
def test_requests_from_another_site_are_refused(client, origin, status):
    response = post(client, b'{"z": [0, 0]}', Origin=origin)
    assert response.status_code == status, response.text


@pytest.mark.parametrize("kind", ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data", None])
def test_bodies_that_a_page_can_send_without_asking_are_refused(client, kind):
    response = post(client, b'{"z": [0, 0]}', kind)
    assert response.status_code == 415 and response.json()["field"] == "content-type", response.text
    assert post(client, b'{"z": [0, 0]}', "application/json; charset=utf-8").status_code == 200


@pytest.mark.parametrize("depth,message", [(20, "nested more than 8 levels"), (200_000, "is not valid JSON")])
def test_deeply_nested_json_is_a_400_not_a_500(client, depth, message):
    response = post(client, b"[" * depth + b"]" * depth)
    assert response.status_code == 400 and message in response.json()["detail"], response.text


def test_every_response_forbids_framing_and_sniffing(client):
    for response in (
        client.get("/"),
        client.get("/api/info"),
        client.get("/nothing"),
        post(client, b"{}", "text/plain"),
        client.get("/api/info", headers={"Host": "evil.example"}),
    ):
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["x-frame-options"] == "DENY"
        assert "frame-ancestors 'none'" in response.headers["content-security-policy"]
    assert "default-src 'self'" in client.get("/").headers["content-security-policy"]


# ---- a real server over raw sockets ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def address(loaded):
    import uvicorn

    with pytest.MonkeyPatch.context() as patch:  # short deadlines and a small cap, so the test is quick
        patch.setattr(server, "HEAD_SECONDS", 1.0)
        patch.setattr(server, "BODY_SECONDS", 1.0)
        patch.setattr(server, "MAX_CONNECTIONS", 8)
        sock = server.listen("127.0.0.1", 0)
        app = explorer.create_app(loaded, server.allowed_hosts("127.0.0.1", sock))
        config = uvicorn.Config(app, log_level="critical", http=server.guarded_protocol(), timeout_keep_alive=5)
        uv = uvicorn.Server(config)
        thread = threading.Thread(target=uv.run, kwargs={"sockets": [sock]}, daemon=True)
        thread.start()
        deadline = time.monotonic() + 30
        while not uv.started:
            assert time.monotonic() < deadline and thread.is_alive()
            time.sleep(0.05)
        yield sock.getsockname()[:2]
        uv.should_exit = True
        thread.join(10)
        sock.close()


def connect(address) -> socket.socket:
    return socket.create_connection(address, timeout=10)


def answer(conn: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection (or 10 s pass)."""
    data = b""
    conn.settimeout(10)
    try:
        while chunk := conn.recv(65536):
            data += chunk
    except (TimeoutError, ConnectionResetError):
        pass
    return data


def closed_within(conn: socket.socket, seconds: float) -> bool:
    conn.settimeout(seconds)
    try:
        return conn.recv(1) == b""
    except TimeoutError:
        return False
    except ConnectionResetError:
        return True


def test_an_idle_or_slow_request_head_is_cut_off(address):
    idle, slow = connect(address), connect(address)
    slow.sendall(b"GET /api/info HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # and never the blank line
    assert closed_within(idle, 5) and closed_within(slow, 5)


def test_an_announced_huge_body_is_refused_at_once(address):
    conn = connect(address)
    conn.sendall(
        b"POST /api/decode HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        b"Content-Length: 10000000000\r\n\r\n"
    )
    assert answer(conn).startswith(b"HTTP/1.1 413")


def test_a_body_that_does_not_arrive_gets_408(address):
    conn = connect(address)
    conn.sendall(
        b"POST /api/decode HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        b'Content-Length: 100\r\n\r\n{"z": '
    )
    reply = answer(conn)
    assert reply.startswith(b"HTTP/1.1 408") and b"did not arrive within" in reply


def test_idle_connections_at_the_cap_make_room_and_cannot_lock_the_user_out(address):
    held = [connect(address) for _ in range(8)]  # the cap of this server, every one idle
    time.sleep(0.2)
    user = connect(address)
    user.sendall(b"GET /api/info HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
    reply = answer(user)
    assert reply.startswith(b"HTTP/1.1 200") and b"nosniff" in reply  # answered at once
    assert closed_within(held[0], 1)  # the connection that waited longest made room
    assert all(closed_within(conn, 5) for conn in held[1:])  # the others at their head deadline


def test_stalled_bodies_at_the_cap_make_room_and_cannot_lock_the_user_out(address):
    stalled = [connect(address) for _ in range(8)]
    for conn in stalled:  # a request head, then a body that never comes
        conn.sendall(
            b"POST /api/decode HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            b'Content-Length: 100\r\n\r\n{"z": '
        )
        time.sleep(0.02)
    time.sleep(0.2)
    user = connect(address)
    user.sendall(b"GET /api/info HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
    assert answer(user).startswith(b"HTTP/1.1 200")  # answered at once
    replies = [answer(conn) for conn in stalled]
    assert not replies[0].startswith(b"HTTP/1.1 408")  # the one that waited longest made room
    assert all(reply.startswith(b"HTTP/1.1 408") for reply in replies[1:])  # the others at their body deadline


def test_a_connection_beyond_the_cap_is_refused_only_when_every_one_is_busy(address, monkeypatch):
    from vaelab.explorer import api

    decode_grid = api.latent.decode_grid
    monkeypatch.setattr(api.latent, "decode_grid", lambda *a: time.sleep(1.5) or decode_grid(*a))  # a slow answer
    busy = [connect(address) for _ in range(8)]
    for conn in busy:  # a whole request, being answered
        conn.sendall(
            b"POST /api/grid HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            b'Content-Length: 8\r\nConnection: close\r\n\r\n{"n": 2}'
        )
    time.sleep(0.5)
    extra = connect(address)
    assert closed_within(extra, 0.5)  # at once, not after the head deadline
    assert all(answer(conn).startswith(b"HTTP/1.1 200") for conn in busy)  # none of them was cut short


def test_a_client_that_leaves_before_its_body_is_a_400_not_a_server_error():
    import asyncio

    from starlette.requests import ClientDisconnect

    class Leaving:
        headers = {"content-length": "100", "content-type": "application/json"}

        async def stream(self):
            raise ClientDisconnect()
            yield b""

    with pytest.raises(server.BadField, match="closed before the body arrived") as e:
        asyncio.run(server.read_body(Leaving()))
    assert e.value.status == 400


def test_the_real_server_checks_the_host(address):
    conn = connect(address)
    conn.sendall(b"GET /api/info HTTP/1.1\r\nHost: rebound.example:80\r\nConnection: close\r\n\r\n")
    assert answer(conn).startswith(b"HTTP/1.1 400")


@pytest.mark.slow  # a new process that starts a server
def test_listening_beyond_this_machine_says_so(untrained_run):
    process = subprocess.Popen(
        [sys.executable, "-m", "vaelab", "serve", str(untrained_run), "--host", "0.0.0.0", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        line = process.stdout.readline()
        warning = process.stderr.readline()
        assert line.startswith("vaelab explorer: http://0.0.0.0:"), line
        assert "warning: listening on 0.0.0.0, so anyone who can reach this machine can use the explorer" in warning
        port = int(line.split(":")[3].split("/")[0])
        conn = socket.create_connection(("127.0.0.1", port), timeout=10)
        conn.sendall(b"GET /api/info HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        assert json.loads(answer(conn).split(b"\r\n\r\n", 1)[1])["runs"][0]["model"] == "mlp"
    finally:
        process.terminate()
        process.wait(30)
