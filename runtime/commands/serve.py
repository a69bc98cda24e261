"""`irreid-edge serve`: a long-running HTTP service over one gallery (FastAPI + uvicorn, extra `serve`).

Loads both encoders and the gallery once, then answers ``GET /`` (the operator page), ``/health``,
``/info``, ``POST /embed``, ``POST /match``, ``POST /gallery``, ``DELETE /gallery/{id}`` and
``GET /gallery/{id}/image``, and with ``--events DIR`` the recent `watch` events (``GET /events``,
``GET /events/{n}/thumbs/track_<id>.jpg``; runtime/serve/events.py) (runtime/serve/app.py; docs/api.md). Binds 127.0.0.1 unless told
otherwise; any other address needs a bearer token. SIGTERM / Ctrl-C: stop accepting, finish the
requests already accepted, commit their gallery writes, exit 0.
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import socket
import sys
from pathlib import Path
from typing import Any

from ..base.choices import MODALITIES, SEARCH_BACKENDS
from ._common import add_model_arguments

HELP = "serve embeddings and gallery search over HTTP (and an operator page) from one loaded process"
TOKEN_ENV = "IRREID_SERVE_TOKEN"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--gallery", required=True, help="gallery folder (its index is refreshed at start)")
    p.add_argument("--gallery-modality", choices=MODALITIES, default="rgb")
    p.add_argument("--index", help="index file (default: <gallery>/.irreid/index.irx)")
    p.add_argument("--store", metavar="URI",
                   help="serve a gallery kept in a vector database instead of the folder's index file: "
                        "milvus-lite:PATH.db or milvus://HOST:19530[/NAME] (docs/fleet.md; fill it with "
                        "`irreid-edge index --store`); --gallery still holds the images behind thumbnails "
                        "and uploads")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to bind (default 127.0.0.1; any other needs --token)")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--allow-host", action="append", default=[], metavar="NAME",
                   help="also answer requests whose Host header is NAME (the name clients or a reverse proxy "
                        "use; repeat for several); others get 421, which defeats DNS rebinding")
    p.add_argument("--token", default=None,
                   help=f"bearer token clients must send (default: ${TOKEN_ENV}; prefer the variable: "
                        "a command line is visible to other users)")
    p.add_argument("--max-upload-mb", type=float, default=8.0, help="largest accepted image upload")
    p.add_argument("--max-pixels", type=int, default=16_000_000, help="largest accepted decoded image")
    p.add_argument("--max-batch", type=int, default=16, help="most images per encoder call (micro-batching)")
    p.add_argument("--batch-window-ms", type=float, default=2.0,
                   help="how long the first image of a batch waits for others")
    p.add_argument("--max-connections", type=int, default=256,
                   help="open connections; past it, the longest idle one is closed to make room, and a new one "
                        "gets 503 only when all are being answered")
    p.add_argument("--header-timeout", type=float, default=10.0, metavar="S",
                   help="a request's headers must arrive within S seconds of connecting (or of the last answer)")
    p.add_argument("--body-timeout", type=float, default=10.0, metavar="S",
                   help="an upload that sends nothing for S seconds is refused (408); one that takes longer "
                        "than 6 x S in all, too")
    p.add_argument("--search", choices=SEARCH_BACKENDS, default="auto",
                   help="exact search backend (int8: the int8 searcher kept in memory, rebuilt after writes)")
    p.add_argument("--no-refresh", action="store_true", help="serve the index as it is, without scanning the folder")
    p.add_argument("--events", action="append", default=[], metavar="DIR",
                   help="a `watch` output folder whose events.jsonl the operator page shows (GET /events; read-only, "
                        "it may not exist yet; repeat for several cameras)")
    p.add_argument("--events-keep", type=int, default=500, metavar="N",
                   help="newest events kept in memory per --events folder (default 500)")
    p.add_argument("--quiet", action="store_true", help="no access log (one line per request on stderr, "
                   "never the query string or a header)")
    add_model_arguments(p)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name: assume it is reachable from outside


def open_store(args: argparse.Namespace, spec: Any) -> Any:
    """The store serve searches and writes: the one place it is opened (the gallery folder's index
    file by default; ``--store URI``: a Milvus collection of this model, created if it has none)."""
    from ..base.errors import UserError
    from ..gallery.index import default_index_path
    from ..gallery.store.local import LocalStore

    if args.store:
        from ..gallery.store.uri import StoreError
        from ..gallery.store.uri import open_store as open_uri_store

        if args.index:
            raise UserError("--store replaces the local index file: drop --index")
        try:
            return open_uri_store(args.store, spec, create=True)
        except StoreError as e:
            raise UserError(str(e)) from None

    index = Path(args.index) if args.index else default_index_path(args.gallery)
    return LocalStore(index, spec, gallery_root=args.gallery, search=args.search, threads=args.threads)


def build_service(args: argparse.Namespace) -> Any:
    from ..api import open_encoder
    from ..gallery.store.folder import open_gallery
    from ..serve.service import Limits, Service
    from ._common import model_path

    model = model_path(args)
    encoders = {m: open_encoder(model, modality=m, precision=args.precision, backend=args.backend,
                                threads=args.threads, verbose=not args.quiet) for m in MODALITIES}
    g_enc = encoders[args.gallery_modality]
    gallery = open_gallery(args.gallery, g_enc, store=open_store(args, g_enc.spec), refresh=not args.no_refresh,
                           quiet=args.quiet)
    max_bytes = int(args.max_upload_mb * (1 << 20))
    limits = Limits(max_bytes=max_bytes, max_pixels=args.max_pixels, max_body_bytes_in_flight=max(64 << 20, 4 * max_bytes),
                    body_idle_s=args.body_timeout, body_total_s=6 * args.body_timeout)
    return Service(encoders, gallery, limits, max_batch=args.max_batch, window_s=args.batch_window_ms / 1000,
                   model=str(model))


def run(args: argparse.Namespace) -> int:
    from ..base.errors import UserError
    from ._common import positive

    positive(args.max_batch, "--max-batch")
    positive(args.max_connections, "--max-connections")
    positive(args.events_keep, "--events-keep")
    if args.max_upload_mb <= 0 or args.max_pixels < 1 or args.batch_window_ms < 0:
        raise UserError("--max-upload-mb and --max-pixels must be positive, --batch-window-ms not negative")
    if not (0 < args.header_timeout < 3600 and 0 < args.body_timeout < 3600):
        raise UserError("--header-timeout and --body-timeout are seconds, more than 0 and less than 3600")
    if not 0 <= args.port <= 65535:
        raise UserError(f"--port {args.port} is not a TCP port (0-65535)")
    token = args.token or os.environ.get(TOKEN_ENV) or None
    if not _is_loopback(args.host) and not token:
        raise UserError(f"--host {args.host} exposes the service beyond this machine: pass --token "
                        f"(or set ${TOKEN_ENV}) so that clients must authenticate, or bind 127.0.0.1")
    try:
        import uvicorn

        from ..serve.app import create_app
        from ..serve.conn import guarded_protocol
        from ..serve.edge import HostRule
        from ..serve.events import EventFeeds
    except ImportError as e:
        raise UserError(f"serve needs FastAPI and uvicorn ({e.name} is missing): "
                        "pip install 'irreid-edge[serve]'") from None
    if not Path(args.gallery).is_dir():
        raise UserError(f"{args.gallery}: gallery folder not found; create it (it may start empty)")
    for folder in args.events:
        if Path(folder).exists() and not Path(folder).is_dir():
            raise UserError(f"--events {folder}: not a folder; pass the folder `watch --out` writes into")
    sock = _listen(args.host, args.port)  # before anything says "serving": a port in use fails here
    try:
        service = build_service(args)
    except BaseException:
        sock.close()
        raise
    hosts = HostRule.for_bind(args.host, args.allow_host)
    app = create_app(service, token, hosts, log=None if args.quiet else _log_line,
                     events=EventFeeds(args.events, keep=args.events_keep))
    config = uvicorn.Config(app, log_level="warning", access_log=False, limit_concurrency=None,
                            http=guarded_protocol(args.max_connections, args.header_timeout),
                            timeout_graceful_shutdown=30, server_header=False)
    port = sock.getsockname()[1]
    shown = f"[{args.host}]" if ":" in args.host else args.host
    print(f"irreid-edge: serving http://{shown}:{port}/ ({len(service.gallery)} gallery entries, "
          f"{service.gallery.modality}; {'token required' if token else 'no token'})", file=sys.stderr, flush=True)
    uvicorn.Server(config).run(sockets=[sock])
    return 0


def _listen(host: str, port: int) -> socket.socket:
    from ..base.errors import UserError

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(2048)
    except (socket.gaierror, UnicodeError) as e:
        sock.close()
        raise UserError(f"--host {host}: not an address of this machine ({e}); pass an IP address such as "
                        "127.0.0.1") from None
    except OSError as e:
        sock.close()
        raise UserError(f"cannot listen on {host}:{port} ({e.strerror}); pick another --port, or stop the "
                        "process that holds it") from None
    sock.set_inheritable(True)
    return sock


def _log_line(line: str) -> None:
    print(f"irreid-edge: {line}", file=sys.stderr, flush=True)
