"""`irreid-edge serve` against hostile clients (a real server subprocess on 127.0.0.1, raw sockets and
urllib): web pages of other sites and DNS rebinding get nothing, slow and idle sockets do not stall
/health or writers, non-finite numbers are refused before anything is written (issue 26)."""

from __future__ import annotations

import io
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from cli_fixtures import cli, make_good_gallery, make_model_dir
from PIL import Image

pytest.importorskip("fastapi", reason="serve needs the `serve` extra: pip install 'irreid-edge[serve]'")
pytest.importorskip("uvicorn", reason="serve needs the `serve` extra: pip install 'irreid-edge[serve]'")

from serve_fixtures import Server, free_port, running_server

MAX_CONN = 40


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    tmp = tmp_path_factory.mktemp("edge")
    model = make_model_dir(tmp / "model")
    make_good_gallery(tmp / "gallery", 6)
    return tmp, model, tmp / "gallery"


@pytest.fixture(scope="module")
def server(setup: tuple[Path, Path, Path]) -> Iterator[Server]:
    tmp, model, gallery = setup
    with running_server(model, gallery, "--header-timeout", "3", "--body-timeout", "5", "--max-connections",
                        str(MAX_CONN), "--allow-host", "gallery.lan", log_dir=tmp) as s:
        yield s


def _png(seed: int) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (64, 32, 3), dtype=np.uint8)).save(buf, "PNG")
    return buf.getvalue()


def _files(gallery: Path) -> list[Path]:
    return sorted(p for p in gallery.rglob("*") if p.is_file() and ".irreid" not in p.parts)


def _raw(port: int, request: bytes, timeout: float = 10) -> bytes:
    """Send bytes, return whatever comes back until the server closes or ``timeout``."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(request)
        out = b""
        try:
            while chunk := s.recv(65536):
                out += chunk
        except TimeoutError:
            pass
    return out


def test_other_sites_pages_and_rebound_names_get_nothing(server: Server, setup: tuple[Path, Path, Path]) -> None:
    gallery = setup[2]
    status, got = server.request("POST", "/gallery?camera=own", _png(1), headers={"Content-Type": "image/png"})
    assert status == 201, got
    entry = got["entry"]
    before = _files(gallery)
    own = f"http://127.0.0.1:{server.port}"
    hostile = [  # (method, path, body, headers, expected status)
        ("POST", "/gallery", _png(2), {"Content-Type": "text/plain", "Origin": "https://evil.example"}, 403),
        ("POST", "/gallery", _png(2), {"Content-Type": "text/plain"}, 415),  # a no-preflight body, any origin
        ("POST", "/gallery", _png(2), {"Content-Type": "application/x-www-form-urlencoded"}, 415),
        ("POST", "/gallery", _png(2), {"Content-Type": ""}, 415),
        ("POST", "/gallery", _png(2), {"Content-Type": "image/png", "Origin": "https://evil.example"}, 403),
        ("POST", "/gallery", _png(2), {"Content-Type": "image/png", "Origin": "null"}, 403),
        ("POST", "/gallery", _png(2), {"Content-Type": "image/png", "Origin": f"http://127.0.0.1:{free_port()}"}, 403),
        ("POST", "/match", _png(2), {"Content-Type": "image/png", "Sec-Fetch-Site": "cross-site"}, 403),
        ("DELETE", f"/gallery/{entry['id']}", None, {"Origin": "https://evil.example"}, 403),
        ("DELETE", f"/gallery/{entry['id']}", None, {"Sec-Fetch-Site": "same-site"}, 403),
        ("GET", f"/gallery/{entry['id']}/image", None, {"Sec-Fetch-Site": "cross-site"}, 403),
        # DNS rebinding: the page's own name now resolves to 127.0.0.1; the browser sends that name
        ("GET", f"/gallery/{entry['id']}/image", None, {"Host": "rebind.attacker.example"}, 421),
        ("DELETE", f"/gallery/{entry['id']}", None, {"Host": f"rebind.attacker.example:{server.port}"}, 421),
        ("GET", "/info", None, {"Host": "127.0.0.1.attacker.example"}, 421),
        ("GET", "/health", None, {"Host": ""}, 421),
        ("POST", "/gallery", _png(2), {"Content-Type": "image/png", "Host": "evil.example",
                                       "Origin": "http://evil.example"}, 421),
    ]
    for method, path, body, headers, want in hostile:
        status, got = server.request(method, path, body, headers=headers)
        assert status == want, (method, path, headers, got)
        assert isinstance(got, dict) and isinstance(got["detail"], str) and "\n" not in got["detail"]
    assert _files(gallery) == before
    assert server.request("GET", f"/gallery/{entry['id']}/image")[0] == 200  # still there
    # the page's own requests, and names that reach this server, still work
    assert server.request("POST", "/match", _png(3), headers={"Origin": own, "Sec-Fetch-Site": "same-origin"})[0] == 200
    assert server.request("GET", "/health", headers={"Host": f"localhost:{server.port}"})[0] == 200
    assert server.request("GET", "/health", headers={"Host": "gallery.lan"})[0] == 200  # --allow-host
    assert server.request("GET", "/", headers={"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "navigate"})[0] == 200


def test_security_headers_on_page_thumbnail_and_data(server: Server) -> None:
    status, got = server.request("POST", "/gallery", _png(4), headers={"Content-Type": "image/png"})
    assert status in (200, 201)
    for path, csp in [("/", "script-src 'sha256-"), (f"/gallery/{got['entry']['id']}/image", "sandbox"),
                      ("/health", "default-src 'none'")]:
        raw = _raw(server.port, f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode())
        head = raw.split(b"\r\n\r\n", 1)[0].decode().lower()
        assert head.startswith("http/1.1 200"), head
        assert "x-content-type-options: nosniff" in head and "frame-ancestors 'none'" in head, head
        assert csp.lower() in head and "x-frame-options: deny" in head, head


@pytest.mark.parametrize("query", ["timestamp=nan", "timestamp=inf", "timestamp=-inf", "timestamp=1e400",
                                   "timestamp=-1", "timestamp=99999999999999", "camera=a%0Ab", "device=%7F",
                                   "camera=" + "x" * 300])
def test_non_finite_and_bad_values_are_refused_before_any_write(server: Server, setup: tuple[Path, Path, Path],
                                                                query: str) -> None:
    before = _files(setup[2])
    status, got = server.request("POST", f"/gallery?{query}", _png(5))
    assert status == 400 and isinstance(got["detail"], str), (query, got)
    assert _files(setup[2]) == before


@pytest.mark.parametrize("query", ["since=nan", "until=inf", "since=-1e400", "since=10&until=5", "camera=%01"])
def test_match_refuses_non_finite_filters(server: Server, query: str) -> None:
    status, got = server.request("POST", f"/match?{query}", _png(6))
    assert status == 400, (query, got)


def _closed(s: socket.socket) -> bool:
    s.settimeout(0.05)
    try:
        return s.recv(1) == b""  # b"": closed by the server
    except ConnectionResetError:  # closed with unread bytes in its buffer: also closed
        return True
    except TimeoutError:
        return False


def _until(check: object, seconds: float) -> bool:
    """Poll ``check()`` until it is true or ``seconds`` pass (timings on a loaded machine vary)."""
    deadline = time.monotonic() + seconds
    while not check():  # type: ignore[operator]
        if time.monotonic() > deadline:
            return False
        time.sleep(0.2)
    return True


def test_idle_sockets_do_not_stall_health(server: Server) -> None:
    """Three times the connection cap of sockets that trickle header lines: /health and a write
    from a fresh connection are answered (the longest idle sockets are closed to make room; before,
    every request got 503 while they stayed), and the header deadline closes the rest."""
    socks = []
    try:
        for _ in range(3 * MAX_CONN):
            s = socket.create_connection(("127.0.0.1", server.port), timeout=30)
            s.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: 1\r\n")
            socks.append(s)
        assert server.request("GET", "/health", timeout=30)[0] == 200
        assert server.request("POST", "/gallery?camera=busy", _png(7), timeout=30)[0] in (200, 201)
        for s in socks[-5:]:  # keep trickling: the header deadline closes them anyway
            s.sendall(b"X-More: 1\r\n")
        assert _until(lambda: all(_closed(s) for s in socks if s.fileno() >= 0), 30), \
            f"{sum(not _closed(s) for s in socks)} trickling sockets still open after the header deadline"
    finally:
        for s in socks:
            s.close()


def test_short_and_half_sent_bodies_are_refused_not_waited_on(server: Server) -> None:
    png = _png(8)
    raw = _raw(server.port, b"POST /gallery HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: image/png\r\n"
               b"Content-Length: %d\r\n\r\n" % (len(png) + 100) + png, timeout=60)
    assert raw.startswith(b"HTTP/1.1 408"), raw[:200]  # before: waited on for ever
    # uploads declared at the 8 MB limit and sent a trickle at a time hold the in-flight budget
    # (64 MB): the next upload is answered 503 at once instead of queueing behind them
    socks = []
    try:
        for _ in range(8):
            s = socket.create_connection(("127.0.0.1", server.port), timeout=30)
            s.sendall(b"POST /embed HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: image/png\r\n"
                      b"Content-Length: 8388608\r\n\r\n" + b"\0" * 1000)
            socks.append(s)

        def refused() -> bool:
            for s in socks:
                s.sendall(b"\0")  # within --body-timeout: they stay
            status, got = server.request("POST", "/embed", png, timeout=30)
            return status == 503 and "uploads" in got["detail"]

        assert _until(refused, 8)
        assert server.request("GET", "/health", timeout=30)[0] == 200
    finally:
        for s in socks:
            s.close()
    assert _until(lambda: server.request("POST", "/embed", png, timeout=30)[0] == 200, 30)  # budget freed


def test_access_log_has_no_token_and_bind_failure_says_so_first(setup: tuple[Path, Path, Path]) -> None:
    tmp, model, gallery = setup
    with running_server(model, gallery, "--no-refresh", token="s3cret-t0ken", log_dir=tmp, quiet=False) as s:
        assert s.request("GET", "/info?token=s3cret-t0ken")[0] == 200
        assert s.request("GET", "/info", token="wrong")[0] == 401
        busy = cli("serve", "--model", str(model), "--gallery", str(gallery), "--port", str(s.port), "--quiet",
                   check=False, env={"IRREID_SERVE_TOKEN": ""})
        time.sleep(0.5)
        log = s.output()
    assert busy.returncode == 2 and "cannot listen" in busy.stderr and "serving" not in busy.stderr, busy.stderr
    assert '"GET /info" 200' in log and '"GET /info" 401' in log, log
    assert "s3cret" not in log


def test_accepted_connections_do_not_wait_on_nagle() -> None:
    """serve binds its own socket (proto 0), so asyncio left Nagle's algorithm on for every accepted
    connection and each keep-alive answer after the first waited ~40 ms for the client's delayed ACK
    (uvicorn sends headers and body apart). The protocol sets TCP_NODELAY itself: checked on a real
    accepted connection of such a socket."""
    from runtime.serve.conn import _no_delay

    class _Transport:
        def __init__(self, sock: socket.socket) -> None:
            self.sock = sock

        def get_extra_info(self, name: str) -> socket.socket | None:
            return self.sock if name == "socket" else None

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listener:  # proto 0, as serve binds it
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        with socket.create_connection(listener.getsockname()) as client:
            conn, _ = listener.accept()
            with conn:
                assert conn.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 0  # what asyncio leaves
                _no_delay(_Transport(conn))
                assert conn.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
                client.sendall(b"x")
                assert conn.recv(1) == b"x"
