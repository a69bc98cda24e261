"""Load test for `irreid-edge serve`: N concurrent clients for a bounded time against 127.0.0.1 only.

    irreid-edge serve --gallery G --model M --port 8765 --quiet &
    python bench/serve_load.py --url http://127.0.0.1:8765 --probe P [P ...] --clients 20 --seconds 20

Each client is a thread with one keep-alive HTTP connection that POSTs a probe (round-robin over
--probe files) to /match (or /embed) as fast as the answers come. Prints requests/s, latency
percentiles (p50, p90, p99, max), errors by status, and the server's mean encoder batch size over
the run (from /info: micro-batching at work). Counted: the requests sent after the warm-up
(--warmup seconds) and answered within the --seconds that follow; make --seconds several times the
latency, or the count is too small to mean much.
Only a loopback URL is accepted: this tool must not load someone else's server.
"""

from __future__ import annotations

import argparse
import http.client
import ipaddress
import json
import os
import statistics
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0], allow_abbrev=False)
    p.add_argument("--url", required=True, help="the server, on 127.0.0.1 / localhost / ::1 only")
    p.add_argument("--probe", nargs="+", required=True, help="probe image files (and/or folders)")
    p.add_argument("--clients", type=int, default=20)
    p.add_argument("--seconds", type=float, default=20.0, help="measured duration")
    p.add_argument("--warmup", type=float, default=2.0, help="seconds of load before measuring")
    p.add_argument("--endpoint", choices=["match", "embed"], default="match")
    p.add_argument("--modality", choices=["ir", "rgb"], default="ir")
    p.add_argument("--top-k", type=int, default=10)
    p.add_argument("--token", default=None, help="bearer token (default: $IRREID_SERVE_TOKEN)")
    p.add_argument("--wait", type=float, default=60.0, help="seconds to wait for the server to answer /health")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    return p


def _loopback(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    host = parts.hostname or ""
    ok = host == "localhost"
    try:
        ok = ok or ipaddress.ip_address(host).is_loopback
    except ValueError:
        pass
    if parts.scheme != "http" or not ok:
        raise SystemExit(f"serve_load: {url}: only http://127.0.0.1, localhost or [::1] URLs are accepted")
    return host, parts.port or 80


def _probes(items: list[str]) -> list[bytes]:
    files: list[Path] = []
    for item in items:
        p = Path(item)
        files += sorted(f for f in p.iterdir() if f.is_file()) if p.is_dir() else [p]
    if not files:
        raise SystemExit("serve_load: no probe file found; pass image files or folders of them")
    return [f.read_bytes() for f in files]


class _Client(threading.Thread):
    def __init__(self, host: str, port: int, path: str, bodies: list[bytes], headers: dict[str, str],
                 start_at: float, stop_at: float, offset: int) -> None:
        super().__init__(daemon=True)
        self.host, self.port, self.path, self.bodies, self.headers = host, port, path, bodies, headers
        self.start_at, self.stop_at, self.i = start_at, stop_at, offset
        self.latencies: list[float] = []
        self.statuses: Counter[int | str] = Counter()

    def run(self) -> None:
        conn = http.client.HTTPConnection(self.host, self.port, timeout=60)
        while (now := time.perf_counter()) < self.stop_at:
            body = self.bodies[self.i % len(self.bodies)]
            self.i += 1
            try:
                conn.request("POST", self.path, body=body, headers=self.headers)
                r = conn.getresponse()
                r.read()
                status: int | str = r.status
            except (OSError, http.client.HTTPException) as e:
                status = type(e).__name__
                conn.close()
                conn = http.client.HTTPConnection(self.host, self.port, timeout=60)
            end = time.perf_counter()
            # counted: requests sent after the warm-up and answered within the measured window
            if now >= self.start_at and end <= self.stop_at:
                self.statuses[status] += 1
                if status == 200:
                    self.latencies.append(end - now)
        conn.close()


def _wait_ready(host: str, port: int, timeout: float) -> None:
    """Poll /health until the server answers (it may still be loading its model)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            conn = http.client.HTTPConnection(host, port, timeout=5)
            conn.request("GET", "/health")
            if conn.getresponse().status == 200:
                return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise SystemExit(f"serve_load: nothing answered GET /health on {host}:{port} within {timeout:g}s; "
                             "start `irreid-edge serve` first")
        time.sleep(0.5)


def _info(host: str, port: int, headers: dict[str, str]) -> dict[str, Any]:
    conn = http.client.HTTPConnection(host, port, timeout=30)
    conn.request("GET", "/info", headers=headers)
    r = conn.getresponse()
    data = r.read()
    if r.status != 200:
        raise SystemExit(f"serve_load: GET /info answered {r.status}: {data[:200]!r}")
    return json.loads(data)  # type: ignore[no-any-return]


def _pct(sorted_s: list[float], q: float) -> float:
    return sorted_s[min(len(sorted_s) - 1, round(q * (len(sorted_s) - 1)))] * 1000


def main(argv: list[str] | None = None) -> int:
    args = get_args_parser().parse_args(argv)
    host, port = _loopback(args.url)
    if args.clients < 1 or args.seconds <= 0:
        raise SystemExit("serve_load: --clients and --seconds must be positive")
    bodies = _probes(args.probe)
    token = args.token or os.environ.get("IRREID_SERVE_TOKEN")
    headers = {"Content-Type": "application/octet-stream", **({"Authorization": f"Bearer {token}"} if token else {})}
    path = f"/{args.endpoint}?modality={args.modality}" + (f"&top_k={args.top_k}" if args.endpoint == "match" else "")
    _wait_ready(host, port, args.wait)
    before = _info(host, port, headers)
    t0 = time.perf_counter()
    start_at, stop_at = t0 + args.warmup, t0 + args.warmup + args.seconds
    clients = [_Client(host, port, path, bodies, headers, start_at, stop_at, i) for i in range(args.clients)]
    for c in clients:
        c.start()
    for c in clients:
        c.join()
    after = _info(host, port, headers)
    lat = sorted(x for c in clients for x in c.latencies)
    statuses: Counter[int | str] = Counter()
    for c in clients:
        statuses.update(c.statuses)
    b0, b1 = before["batching"][args.modality], after["batching"][args.modality]
    batches = b1["batches"] - b0["batches"]
    out = {
        "endpoint": args.endpoint, "modality": args.modality, "clients": args.clients, "seconds": args.seconds,
        "gallery_size": after["gallery"]["size"], "backend": after["backend"], "precision": after["precision"],
        "requests_ok": len(lat), "requests_per_s": round(len(lat) / args.seconds, 1),
        "p50_ms": round(_pct(lat, 0.50), 1) if lat else None, "p90_ms": round(_pct(lat, 0.90), 1) if lat else None,
        "p99_ms": round(_pct(lat, 0.99), 1) if lat else None, "max_ms": round(lat[-1] * 1000, 1) if lat else None,
        "mean_ms": round(statistics.fmean(lat) * 1000, 1) if lat else None,
        "statuses": {str(k): v for k, v in sorted(statuses.items(), key=str)},
        "mean_encoder_batch": round((b1["images"] - b0["images"]) / batches, 2) if batches else None,
    }
    if args.json:
        print(json.dumps(out))
    else:
        print(f"{out['clients']} clients x {out['seconds']:g}s POST {path} ({out['gallery_size']} gallery entries, "
              f"{out['backend']} {out['precision']}): {out['requests_per_s']} requests/s, "
              f"p50 {out['p50_ms']} ms, p90 {out['p90_ms']} ms, p99 {out['p99_ms']} ms, max {out['max_ms']} ms; "
              f"statuses {out['statuses']}; mean encoder batch {out['mean_encoder_batch']}")
    return 0 if lat and set(statuses) == {200} else 1


if __name__ == "__main__":
    sys.exit(main())
