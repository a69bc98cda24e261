"""Starting the real `irreid-edge serve` in a subprocess on a free 127.0.0.1 port, and talking HTTP to it."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from cli_fixtures import CONSOLE_SCRIPT, REPO


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    def __init__(self, proc: subprocess.Popen[str], port: int, log: Path, token: str | None = None) -> None:
        self.proc, self.port, self.log, self.token = proc, port, log, token
        self.url = f"http://127.0.0.1:{port}"

    def request(self, method: str, path: str, body: bytes | None = None, token: str | None = None,
                headers: dict[str, str] | None = None, timeout: float = 30) -> tuple[int, Any]:
        """(status, parsed JSON or raw bytes); HTTP errors are returned, not raised."""
        h = dict(headers or {})
        tok = token if token is not None else self.token
        if tok:
            h["Authorization"] = f"Bearer {tok}"
        if body is not None:
            h.setdefault("Content-Type", "application/octet-stream")
        req = urllib.request.Request(self.url + path, data=body, method=method, headers=h)
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                status, raw, ctype = r.status, r.read(), r.headers.get("content-type", "")
        except urllib.error.HTTPError as e:
            status, raw, ctype = e.code, e.read(), e.headers.get("content-type", "")
        return status, json.loads(raw) if ctype.startswith("application/json") else raw

    def stop(self, sig: int | None = None) -> int:
        import signal

        if self.proc.poll() is None:
            self.proc.send_signal(sig or signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        return int(self.proc.returncode)

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


@contextmanager
def running_server(model: Path, gallery: Path, *args: str, token: str | None = None, log_dir: Path,
                   ready_timeout: float = 90, quiet: bool = True) -> Iterator[Server]:
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    if token:
        env["IRREID_SERVE_TOKEN"] = token
    log = log_dir / f"serve-{port}.log"
    cmd = [sys.executable, "-c", CONSOLE_SCRIPT, "serve", "--model", str(model), "--gallery", str(gallery),
           "--port", str(port), *(["--quiet"] if quiet else []), *args]
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT, text=True)
    server = Server(proc, port, log, token)
    try:
        deadline = time.monotonic() + ready_timeout
        while True:
            if proc.poll() is not None:
                raise AssertionError(f"serve exited {proc.returncode} before answering:\n{server.output()}")
            try:
                if server.request("GET", "/health", timeout=2)[0] == 200:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"serve did not answer /health in {ready_timeout}s:\n{server.output()}")
            time.sleep(0.2)
        yield server
    finally:
        server.stop()
