#!/usr/bin/env python
"""Requests/s and latency of `captcha-stream serve` on loopback, with concurrent clients.

Starts the server on 127.0.0.1 (a free port), renders a few captchas, then for each client count
sends a fixed number of POST /read requests (raw PNG bodies) from that many threads, each a
keep-alive connection, and reports requests/s and p50/p95 latency. Bounded: --requests per level.

  python bench/serve.py [--checkpoint captcha62] [--backend torch|onnx] [--clients 1,4,8] [--requests 200]
"""

from __future__ import annotations

import argparse
import http.client
import io
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from captcha_stream.config import DataConfig  # noqa: E402
from captcha_stream.data.render import Renderer  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_healthy(port: int, proc: subprocess.Popen) -> None:
    for _ in range(600):
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
            conn.request("GET", "/health")
            if conn.getresponse().status == 200:
                return
        except OSError:
            if proc.poll() is not None:
                raise SystemExit(f"the server exited: {proc.stderr.read()}") from None
            time.sleep(0.1)
    raise SystemExit("the server did not answer /health within 60 s")


def client(port: int, bodies: list[bytes], n: int, latencies: list[float]) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    for i in range(n):
        t = time.perf_counter()
        conn.request("POST", "/read", body=bodies[i % len(bodies)], headers={"Content-Type": "image/png"})
        response = conn.getresponse()
        response.read()
        if response.status != 200:
            raise SystemExit(f"HTTP {response.status}")
        latencies.append(time.perf_counter() - t)


def level(port: int, bodies: list[bytes], clients: int, requests: int) -> dict[str, float]:
    latencies: list[float] = []
    per_client = max(1, requests // clients)
    threads = [threading.Thread(target=client, args=(port, bodies, per_client, latencies)) for _ in range(clients)]
    t = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - t
    ordered = sorted(latencies)
    return {
        "clients": clients,
        "requests": len(latencies),
        "requests_per_s": len(latencies) / wall,
        "latency_ms_p50": 1000 * statistics.median(ordered),
        "latency_ms_p95": 1000 * ordered[int(0.95 * (len(ordered) - 1))],
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", default="captcha62")
    p.add_argument("--backend", choices=["torch", "onnx"], default="torch")
    p.add_argument("--clients", default="1,4,8", help="client counts to measure, comma-separated")
    p.add_argument("--requests", type=int, default=200, help="requests per client count")
    p.add_argument("--out", default="bench/results/serve.json")
    args = p.parse_args()
    port = free_port()
    command = [sys.executable, "-m", "captcha_stream", "serve", "--port", str(port), "--checkpoint", args.checkpoint]
    proc = subprocess.Popen([*command, "--backend", args.backend], stderr=subprocess.PIPE, text=True)
    try:
        wait_healthy(port, proc)
        renderer, bodies = Renderer(DataConfig(), seed=11), []
        for _ in range(16):
            buf = io.BytesIO()
            renderer.sample()[0].save(buf, format="PNG")
            bodies.append(buf.getvalue())
        level(port, bodies, 1, 10)  # warm-up
        rows = [level(port, bodies, int(c), args.requests) for c in args.clients.split(",")]
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    print(f"captcha-stream serve, {args.checkpoint} ({args.backend}), loopback, {os.cpu_count()} cores")
    print(f"{'clients':>8}{'requests':>10}{'req/s':>9}{'p50 ms':>9}{'p95 ms':>9}")
    for r in rows:
        print(
            f"{r['clients']:>8}{r['requests']:>10}{r['requests_per_s']:>9.1f}"
            f"{r['latency_ms_p50']:>9.2f}{r['latency_ms_p95']:>9.2f}"
        )
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    result = {
        "checkpoint": args.checkpoint,
        "backend": args.backend,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "rows": rows,
    }
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(f"saved {args.out}")


if __name__ == "__main__":
    main()
