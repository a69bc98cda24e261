"""The HTTP layer of ``irreid-edge serve`` (FastAPI on uvicorn; imported only when serving).

Every request body is one encoded image, sent raw with an image Content-Type (``curl
--data-binary @crop.jpg -H 'Content-Type: image/jpeg'``). Errors are JSON ``{"detail": "one
line"}``: 400 undecodable image or bad parameter, 401 missing/wrong token, 403 a request from
another site's page, 404 unknown entry, 408 a body that did not arrive in time, 413 too many bytes
or pixels, 415 not an image content type, 421 a Host that is not this server, 503 busy (encoder
queue, uploads in flight, connections) or the store unavailable. A failing request never stops
the process. With ``--token`` every route but ``/`` (the page, no data) and ``/health`` needs
``Authorization: Bearer TOKEN``, compared in constant time. edge.py checks Host, Origin and
Content-Type before any route runs and adds the security headers; conn.py bounds connections.
"""

# No `from __future__ import annotations`: FastAPI reads the route signatures at runtime, and the
# fastapi names they use are imported inside create_app (serve is an optional extra).
import asyncio
import hmac
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated, Any

from ..gallery.index import IndexFileError
from ..gallery.store.address import StoreError
from ..gallery.store.base import Filters, check_label
from ..preprocess import ImageDecodeError
from .batcher import Busy
from .edge import EdgeMiddleware, HostRule, page_csp
from .events import EventFeeds
from .service import Limits, Service, parse_time

__all__ = ["PAGE", "SEQ_HEADER", "create_app"]

SEQ_HEADER = "X-Irreid-Seq"  # on every write's answer: the order this process applied the writes in

PAGE = Path(__file__).with_name("page.html")
_MEDIA = {".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".png": "image/png", ".bmp": "image/bmp",
          ".tif": "image/tiff", ".tiff": "image/tiff", ".webp": "image/webp", ".pgm": "image/x-portable-graymap",
          ".ppm": "image/x-portable-pixmap"}


def create_app(service: Service, token: str | None = None, hosts: HostRule | None = None,
               log: Any = None, events: EventFeeds | None = None) -> Any:
    """The ASGI app: the edge checks (``hosts``: default, a 127.0.0.1 bind) around the routes.
    ``log``: a function taking one access-log line, or None for no access log. ``events``: the
    `watch` output folders behind ``GET /events`` (``serve --events DIR``), or None for none."""
    from fastapi import Depends, FastAPI
    from fastapi.responses import JSONResponse, Response
    from starlette.concurrency import run_in_threadpool
    from starlette.requests import ClientDisconnect

    @asynccontextmanager
    async def lifespan(app: Any) -> AsyncIterator[None]:
        yield
        await run_in_threadpool(service.close)  # uvicorn calls this after the last request finished

    app = FastAPI(title="irreid-edge", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)

    async def unavailable(request: Any, e: Exception) -> Any:  # the store, the disk: never a 500
        return JSONResponse({"detail": _one_line(e)}, status_code=503, headers={"Retry-After": "5"})

    async def gone(request: Any, e: Exception) -> Any:  # the client left: nobody reads this
        return Response(status_code=400, headers={"Connection": "close"})

    for exc in (StoreError, IndexFileError, OSError):
        app.add_exception_handler(exc, unavailable)
    app.add_exception_handler(ClientDisconnect, gone)
    auth = [Depends(_auth_dependency(token))]
    budget = _Budget(service.limits)
    _read_routes(app, service, auth, budget)
    _event_routes(app, events or EventFeeds([]), auth)
    _write_routes(app, service, auth, budget)
    return EdgeMiddleware(app, hosts or HostRule.for_bind("127.0.0.1"), page_csp(PAGE.read_text(encoding="utf-8")),
                          log)


def _auth_dependency(token: str | None) -> Any:
    from fastapi import HTTPException, Request

    secret = token.encode("utf-8") if token else None

    def authorised(request: Request) -> None:
        if secret is None:
            return
        scheme, _, value = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(value.strip().encode("utf-8"), secret):
            raise HTTPException(401, "missing or wrong token; send the header `Authorization: Bearer TOKEN`",
                                headers={"WWW-Authenticate": "Bearer"})

    return authorised


class _Budget:
    """Bytes of request bodies being received at once: slow senders cannot hold more than this."""

    def __init__(self, limits: Limits) -> None:
        self.limits, self.used = limits, 0


async def _body(request: Any, budget: _Budget) -> bytes:
    """The raw request body: 413 past the upload limit (before it is all read), 408 when it stalls
    (``body_idle_s`` between pieces, ``body_total_s`` in all), 503 when the uploads being received
    already hold ``max_body_bytes_in_flight``."""
    from fastapi import HTTPException

    lim = budget.limits
    close = {"Connection": "close"}
    length = request.headers.get("content-length", "")
    if length.isdigit() and int(length) > lim.max_bytes:
        raise HTTPException(413, f"upload of {int(length):,} bytes is over the {lim.max_bytes:,}-byte limit; "
                                 "send a crop, not a frame, or raise --max-upload-mb", headers=close)
    reserve = int(length) if length.isdigit() else lim.max_bytes
    if budget.used + reserve > lim.max_body_bytes_in_flight:
        raise HTTPException(503, "too many uploads are being received at once; retry in a moment",
                            headers={"Retry-After": "1", **close})
    budget.used += reserve
    try:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + lim.body_total_s
        chunks = request.stream().__aiter__()
        buf = bytearray()
        while True:
            wait = min(lim.body_idle_s, deadline - loop.time())
            try:
                if wait <= 0:
                    raise asyncio.TimeoutError
                chunk = await asyncio.wait_for(chunks.__anext__(), wait)
            except StopAsyncIteration:
                break
            except asyncio.TimeoutError:
                raise HTTPException(408, f"the request body stopped arriving ({len(buf):,} of "
                                         f"{length or 'unknown'} bytes received); send it in one go",
                                    headers=close) from None
            buf += chunk
            if len(buf) > lim.max_bytes:
                raise HTTPException(413, f"upload is over the {lim.max_bytes:,}-byte limit; send a crop, not a "
                                         "frame, or raise --max-upload-mb", headers=close)
    finally:
        budget.used -= reserve
    if not buf:
        raise HTTPException(400, "empty body; send one encoded image (JPEG/PNG) as the request body")
    return bytes(buf)


async def _embed(service: Service, data: bytes, modality: str) -> Any:
    """Decode in a worker thread, then the micro-batcher: (D,) embedding."""
    from fastapi import HTTPException
    from starlette.concurrency import run_in_threadpool

    try:
        service.encoder(modality)
        pixels = await run_in_threadpool(service.pixels, data, modality)
        return await asyncio.wrap_future(service.embed(pixels, modality))
    except KeyError as e:
        raise HTTPException(400, str(e.args[0])) from None
    except ImageDecodeError as e:
        raise _image_error(HTTPException, e) from None
    except Busy as e:
        raise HTTPException(503, str(e), headers={"Retry-After": "1"}) from None


def _read_routes(app: Any, service: Service, auth: list[Any], budget: _Budget) -> None:
    from fastapi import HTTPException, Query, Request
    from fastapi.responses import FileResponse, HTMLResponse
    from starlette.concurrency import run_in_threadpool

    page = PAGE.read_text(encoding="utf-8")

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def index() -> Any:
        return HTMLResponse(page, headers={"Cache-Control": "no-store"})

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return {"status": "ok", "gallery_size": len(service.gallery)}

    @app.get("/info", dependencies=auth)
    async def info() -> dict[str, Any]:
        return service.info()

    @app.post("/embed", dependencies=auth)
    async def embed_route(request: Request, modality: str = "ir") -> dict[str, Any]:
        emb = await _embed(service, await _body(request, budget), modality)
        return {"modality": modality, "dim": int(emb.shape[0]), "embedding": [float(v) for v in emb]}

    @app.post("/match", dependencies=auth)
    async def match(request: Request, modality: str = "ir",
                    top_k: Annotated[int, Query(ge=1, le=service.limits.max_top_k)] = 10,
                    camera: Annotated[list[str] | None, Query()] = None,
                    device: Annotated[list[str] | None, Query()] = None,
                    since: str | None = None, until: str | None = None) -> dict[str, Any]:
        try:
            filters = Filters(cameras=_names(camera or [], "camera"), devices=_names(device or [], "device"),
                              since=parse_time(since, "since"), until=parse_time(until, "until"))
            service.encoder(modality)
        except (ValueError, KeyError) as e:
            raise HTTPException(400, str(e.args[0] if isinstance(e, KeyError) else e)) from None
        if filters.since is not None and filters.until is not None and filters.since > filters.until:
            raise HTTPException(400, f"since={since} is after until={until}; swap them")
        emb = await _embed(service, await _body(request, budget), modality)
        results = await run_in_threadpool(service.search, emb, top_k, filters)
        return {"modality": modality, "gallery_modality": service.gallery.modality, "top_k": top_k,
                "gallery_size": len(service.gallery), "results": results}

    @app.get("/gallery/{entry_id}/image", dependencies=auth)
    async def image(entry_id: str) -> Any:
        path = service.image_file(entry_id)
        if path is None:
            raise HTTPException(404, f"no image for gallery entry {entry_id!r} inside the gallery folder")
        return FileResponse(path, media_type=_MEDIA.get(path.suffix.lower(), "application/octet-stream"),
                            headers={"Cache-Control": "private, no-cache"})  # a deleted entry's image must not linger


def _event_routes(app: Any, feeds: EventFeeds, auth: list[Any]) -> None:
    from fastapi import HTTPException, Query
    from fastapi.responses import Response
    from starlette.concurrency import run_in_threadpool

    @app.get("/events", dependencies=auth)
    async def events(limit: Annotated[int, Query(ge=1, le=100_000)] = 50) -> dict[str, Any]:
        return await run_in_threadpool(feeds.recent, limit)

    @app.get("/events/{feed}/thumbs/{name}", dependencies=auth)
    async def event_thumbnail(feed: int, name: str) -> Any:
        data = await run_in_threadpool(feeds.thumbnail, feed, name)
        if data is None:
            raise HTTPException(404, "no such track thumbnail (names are track_<id>.jpg inside a --events folder's "
                                     "thumbs/)")
        return Response(data, media_type="image/jpeg", headers={"Cache-Control": "private, no-cache"})


def _write_routes(app: Any, service: Service, auth: list[Any], budget: _Budget) -> None:
    from fastapi import HTTPException, Request
    from fastapi.responses import JSONResponse
    from starlette.concurrency import run_in_threadpool

    @app.post("/gallery", dependencies=auth, status_code=201)
    async def add(request: Request, camera: str = "", device: str = "", timestamp: str | None = None) -> Any:
        try:  # every value checked before the body is read, let alone anything written
            ts = parse_time(timestamp, "timestamp")
            check_label(camera, "camera")
            check_label(device, "device")
        except ValueError as e:
            raise HTTPException(400, str(e)) from None
        data = await _body(request, budget)
        try:
            fut = await run_in_threadpool(service.add, data, camera, ts, device)
        except ImageDecodeError as e:
            raise _image_error(HTTPException, e) from None
        except ValueError as e:
            raise HTTPException(400, str(e)) from None
        res, seq = await asyncio.wrap_future(fut)  # files and row durable before we answer
        return JSONResponse({"added": bool(res.count), "entry": res.entry.to_dict(), "seq": seq,
                             "gallery_size": len(service.gallery)}, status_code=201 if res.count else 200,
                            headers={SEQ_HEADER: str(seq)})

    @app.delete("/gallery/{entry_id}", dependencies=auth)
    async def remove(entry_id: str) -> Any:
        res, seq = await asyncio.wrap_future(service.remove([entry_id]))
        if not res.count:
            raise HTTPException(404, f"no gallery entry {entry_id[:80]!r}", headers={SEQ_HEADER: str(seq)})
        return JSONResponse({"removed": entry_id, "seq": seq, "gallery_size": len(service.gallery)},
                            headers={SEQ_HEADER: str(seq)})


def _names(values: list[str], what: str) -> tuple[str, ...] | None:
    """Repeated and/or comma-separated values (camera=c1&camera=c2 or camera=c1,c2); None = no filter."""
    names = tuple(check_label(v.strip(), what) for item in values for v in item.split(",") if v.strip())
    return names or None


def _one_line(e: Exception) -> str:
    return " ".join(str(e).split())[:500] or type(e).__name__


def _image_error(exc: Any, e: ImageDecodeError) -> Any:
    msg = str(e)
    return exc(413 if "decompression bomb" in msg else 400, msg)
