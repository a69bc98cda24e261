"""`irreid-edge serve`: a long-running HTTP service over one gallery (FastAPI + uvicorn, extra `serve`).

Loads both encoders and the gallery once, then answers ``GET /`` (the operator page), ``/health``,
``/info``, ``POST /embed``, ``POST /match``, ``POST /gallery``, ``DELETE /gallery/{id}`` and
``GET /gallery/{id}/image`` (runtime/serve/app.py; docs/api.md). Binds 127.0.0.1 unless told
otherwise; any other address needs a bearer token. SIGTERM / Ctrl-C: stop accepting, finish the
requests already accepted, commit their gallery writes, exit 0.
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import sys
from pathlib import Path
from typing import Any

from ..choices import MODALITIES, SEARCH_BACKENDS
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
    p.add_argument("--token", default=None,
                   help=f"bearer token clients must send (default: ${TOKEN_ENV}; prefer the variable: "
                        "a command line is visible to other users)")
    p.add_argument("--max-upload-mb", type=float, default=8.0, help="largest accepted image upload")
    p.add_argument("--max-pixels", type=int, default=16_000_000, help="largest accepted decoded image")
    p.add_argument("--max-batch", type=int, default=16, help="most images per encoder call (micro-batching)")
    p.add_argument("--batch-window-ms", type=float, default=2.0,
                   help="how long the first image of a batch waits for others")
    p.add_argument("--max-connections", type=int, default=256,
                   help="concurrent connections before new ones get 503")
    p.add_argument("--search", choices=SEARCH_BACKENDS, default="auto",
                   help="exact search backend (int8: the int8 searcher kept in memory, rebuilt after writes)")
    p.add_argument("--no-refresh", action="store_true", help="serve the index as it is, without scanning the folder")
    p.add_argument("--quiet", action="store_true", help="no access log")
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
    from ..errors import UserError
    from ..index import default_index_path
    from ..store.local import LocalStore

    if args.store:
        from ..store.uri import StoreError
        from ..store.uri import open_store as open_uri_store

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
    from ..serve.service import Limits, Service
    from ..store.folder import open_gallery
    from ._common import model_path

    model = model_path(args)
    encoders = {m: open_encoder(model, modality=m, precision=args.precision, backend=args.backend,
                                threads=args.threads, verbose=not args.quiet) for m in MODALITIES}
    g_enc = encoders[args.gallery_modality]
    gallery = open_gallery(args.gallery, g_enc, store=open_store(args, g_enc.spec), refresh=not args.no_refresh,
                           quiet=args.quiet)
    limits = Limits(max_bytes=int(args.max_upload_mb * (1 << 20)), max_pixels=args.max_pixels)
    return Service(encoders, gallery, limits, max_batch=args.max_batch, window_s=args.batch_window_ms / 1000,
                   model=str(model))


def run(args: argparse.Namespace) -> int:
    from ..errors import UserError
    from ._common import positive

    positive(args.max_batch, "--max-batch")
    positive(args.max_connections, "--max-connections")
    if args.max_upload_mb <= 0 or args.max_pixels < 1 or args.batch_window_ms < 0:
        raise UserError("--max-upload-mb and --max-pixels must be positive, --batch-window-ms not negative")
    if not 0 <= args.port <= 65535:
        raise UserError(f"--port {args.port} is not a TCP port (0-65535)")
    token = args.token or os.environ.get(TOKEN_ENV) or None
    if not _is_loopback(args.host) and not token:
        raise UserError(f"--host {args.host} exposes the service beyond this machine: pass --token "
                        f"(or set ${TOKEN_ENV}) so that clients must authenticate, or bind 127.0.0.1")
    try:
        import uvicorn

        from ..serve.app import create_app
    except ImportError as e:
        raise UserError(f"serve needs FastAPI and uvicorn ({e.name} is missing): "
                        "pip install 'irreid-edge[serve]'") from None
    if not Path(args.gallery).is_dir():
        raise UserError(f"{args.gallery}: gallery folder not found; create it (it may start empty)")
    service = build_service(args)
    app = create_app(service, token)
    config = uvicorn.Config(app, host=args.host, port=args.port, log_level="warning",
                            access_log=not args.quiet, limit_concurrency=args.max_connections,
                            timeout_graceful_shutdown=30, server_header=False)
    print(f"irreid-edge: serving http://{args.host}:{args.port}/ ({len(service.gallery)} gallery entries, "
          f"{service.gallery.modality}; {'token required' if token else 'no token'})", file=sys.stderr, flush=True)
    uvicorn.Server(config).run()
    return 0
