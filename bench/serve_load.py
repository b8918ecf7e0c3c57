"""Decode latency of the explorer's server under load: 8 clients x 500 requests at once.

    python bench/serve_load.py [RUN] [--clients 8] [--requests 500]

Starts `vaelab.explorer.serve` in a subprocess on a free loopback port (RUN, or a conv VAE trained
here for 2 epochs on the bundled sample when RUN is not given), then:
  1. one client, one request at a time (what the page does: at most one decode in flight);
  2. `--clients` threads, each with its own keep-alive connection, `--requests` decodes each.
Every request asks for a random point of the run's view and must come back 200 with a PNG.
Prints the CPU, versions and the p50 / p95 / max round trip of each phase, after 50 warm-up requests.
"""

import argparse
import http.client
import json
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from importlib.metadata import version

import numpy as np


def start_server(run: str) -> tuple[subprocess.Popen, str, int]:
    code = "import sys; from vaelab.explorer import serve; serve(sys.argv[1:], port=0)"
    server = subprocess.Popen([sys.executable, "-c", code, run], stdout=subprocess.PIPE, text=True)
    line = server.stdout.readline()  # "vaelab explorer: http://127.0.0.1:PORT/  ..."
    if "http://" not in line:
        server.kill()
        sys.exit(f"the server did not start (exit status {server.wait()}); see its messages above")
    host, port = line.split("http://")[1].split("/")[0].rsplit(":", 1)
    return server, host, int(port)


def request(conn: http.client.HTTPConnection, body: dict) -> float:
    start = time.perf_counter()
    conn.request("POST", "/api/decode", json.dumps(body), {"Content-Type": "application/json"})
    response = conn.getresponse()
    data = response.read()
    seconds = time.perf_counter() - start
    if response.status != 200 or not json.loads(data)["image"].startswith("data:image/png;base64,"):
        raise RuntimeError(f"HTTP {response.status}: {data[:200]!r}")
    return seconds


def client(host: str, port: int, bodies: list[dict], times: list, errors: list) -> None:
    conn = http.client.HTTPConnection(host, port, timeout=30)
    for body in bodies:
        try:
            times.append(request(conn, body))
        except Exception as e:  # counted and reported, not fatal: the point is to see them
            errors.append(repr(e))
            conn = http.client.HTTPConnection(host, port, timeout=30)
    conn.close()


def random_bodies(view, n: int, seed: int) -> list[dict]:
    rng = np.random.default_rng(seed)
    (x0, x1), (y0, y1) = view
    return [{"plane": [float(rng.uniform(x0, x1)), float(rng.uniform(y0, y1))]} for _ in range(n)]


def phase(host, port, view, clients: int, requests: int) -> tuple[list[float], list[str], float]:
    times, errors = [], []
    threads = [
        threading.Thread(target=client, args=(host, port, random_bodies(view, requests, i), times, errors))
        for i in range(clients)
    ]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return times, errors, time.perf_counter() - start


def report(name: str, times: list[float], errors: list[str], wall: float) -> None:
    ms = np.array(times) * 1000
    print(
        f"{name:<28} {len(times):>6} ok {len(errors):>3} errors   p50 {np.percentile(ms, 50):6.2f} ms"
        f"   p95 {np.percentile(ms, 95):6.2f} ms   max {ms.max():7.2f} ms   {len(times) / wall:7.0f} req/s"
    )
    for e in errors[:3]:
        print("   ", e)


def cpu_name() -> str:
    try:
        lines = open("/proc/cpuinfo").read().splitlines()
        return next(line.split(":", 1)[1].strip() for line in lines if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or platform.machine()


def trained_run(folder: str) -> str:
    from vaelab.config import TrainConfig
    from vaelab.training import train

    print("no RUN given: training a conv VAE for 2 epochs on mnist-sample ...", flush=True)
    return str(train(TrainConfig(model="conv", dataset="mnist-sample", epochs=2), out=folder, progress=False))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", nargs="?", help="run folder (default: train a small conv run first)")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--requests", type=int, default=500, help="decode requests per client")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        server, host, port = start_server(args.run or trained_run(f"{tmp}/run"))
        try:
            conn = http.client.HTTPConnection(host, port)
            conn.request("GET", "/api/info")
            info = json.loads(conn.getresponse().read())["runs"][0]
            print(
                f"cpu: {cpu_name()}, {len(os.sched_getaffinity(0))} cores; python {platform.python_version()}, "
                f"torch {version('torch')}, starlette {version('starlette')}, uvicorn {version('uvicorn')}; "
                f"model {info['model']} (latent {info['latent_dim']}); server torch threads 1"
            )
            phase(host, port, info["view"], 1, 50)  # warm-up
            report("1 client, sequential", *phase(host, port, info["view"], 1, args.requests))
            report(f"{args.clients} clients at once", *phase(host, port, info["view"], args.clients, args.requests))
        finally:
            server.terminate()
            server.wait(10)


if __name__ == "__main__":
    main()
