"""The HTTP layer of ``irreid-edge serve`` (FastAPI on uvicorn; imported only when serving).

Every request body is one encoded image, sent raw (``curl --data-binary @crop.jpg``). Errors are
JSON ``{"detail": "one line"}``: 400 undecodable image or bad parameter, 401 missing/wrong token,
404 unknown entry, 413 too many bytes or pixels, 415 a form instead of raw bytes, 503 encoder queue
full. A failing request never stops the process. With ``--token`` every route but ``/`` (the page,
no data) and ``/health`` needs ``Authorization: Bearer TOKEN``, compared in constant time.
"""

# No `from __future__ import annotations`: FastAPI reads the route signatures at runtime, and the
# fastapi names they use are imported inside create_app (serve is an optional extra).
import asyncio
import hmac
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated, Any

from ..preprocess import ImageDecodeError
from ..store.base import Filters
from .batcher import Busy
from .service import Service, parse_time

__all__ = ["PAGE", "create_app"]

PAGE = Path(__file__).with_name("page.html")
_MEDIA = {".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".png": "image/png", ".bmp": "image/bmp",
          ".tif": "image/tiff", ".tiff": "image/tiff", ".webp": "image/webp", ".pgm": "image/x-portable-graymap",
          ".ppm": "image/x-portable-pixmap"}


def create_app(service: Service, token: str | None = None) -> Any:
    from fastapi import Depends, FastAPI
    from starlette.concurrency import run_in_threadpool

    @asynccontextmanager
    async def lifespan(app: Any) -> AsyncIterator[None]:
        yield
        await run_in_threadpool(service.close)  # uvicorn calls this after the last request finished

    app = FastAPI(title="irreid-edge", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    auth = [Depends(_auth_dependency(token))]
    _read_routes(app, service, auth)
    _write_routes(app, service, auth)
    return app


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


async def _body(request: Any, limit: int) -> bytes:
    """The raw request body, refused (413) past ``limit`` bytes before it is all read."""
    from fastapi import HTTPException

    if request.headers.get("content-type", "").startswith("multipart/"):
        raise HTTPException(415, "send the image bytes as the raw request body "
                                 "(curl --data-binary @crop.jpg), not a multipart form")
    length = request.headers.get("content-length", "")
    if length.isdigit() and int(length) > limit:
        raise HTTPException(413, f"upload of {int(length):,} bytes is over the {limit:,}-byte limit; "
                                 "send a crop, not a frame, or raise --max-upload-mb")
    buf = bytearray()
    async for chunk in request.stream():
        buf += chunk
        if len(buf) > limit:
            raise HTTPException(413, f"upload is over the {limit:,}-byte limit; send a crop, not a frame, "
                                     "or raise --max-upload-mb")
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


def _read_routes(app: Any, service: Service, auth: list[Any]) -> None:
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
        emb = await _embed(service, await _body(request, service.limits.max_bytes), modality)
        return {"modality": modality, "dim": int(emb.shape[0]), "embedding": [float(v) for v in emb]}

    @app.post("/match", dependencies=auth)
    async def match(request: Request, modality: str = "ir",
                    top_k: Annotated[int, Query(ge=1, le=service.limits.max_top_k)] = 10,
                    camera: Annotated[list[str] | None, Query()] = None,
                    device: Annotated[list[str] | None, Query()] = None,
                    since: str | None = None, until: str | None = None) -> dict[str, Any]:
        try:
            filters = Filters(cameras=_names(camera or []), devices=_names(device or []),
                              since=parse_time(since, "since"), until=parse_time(until, "until"))
        except ValueError as e:
            raise HTTPException(400, str(e)) from None
        emb = await _embed(service, await _body(request, service.limits.max_bytes), modality)
        results = await run_in_threadpool(service.search, emb, top_k, filters)
        return {"modality": modality, "gallery_modality": service.gallery.modality, "top_k": top_k,
                "gallery_size": len(service.gallery), "results": results}

    @app.get("/gallery/{entry_id}/image", dependencies=auth)
    async def image(entry_id: str) -> Any:
        path = service.image_file(entry_id)
        if path is None:
            raise HTTPException(404, f"no image for gallery entry {entry_id!r} inside the gallery folder")
        return FileResponse(path, media_type=_MEDIA.get(path.suffix.lower(), "application/octet-stream"),
                            headers={"Cache-Control": "private, max-age=3600"})


def _write_routes(app: Any, service: Service, auth: list[Any]) -> None:
    from fastapi import HTTPException, Request
    from fastapi.responses import JSONResponse
    from starlette.concurrency import run_in_threadpool

    @app.post("/gallery", dependencies=auth, status_code=201)
    async def add(request: Request, camera: str = "", device: str = "", timestamp: str | None = None) -> Any:
        data = await _body(request, service.limits.max_bytes)
        try:
            ts = parse_time(timestamp, "timestamp")
            entry, fut = await run_in_threadpool(service.add, data, camera, ts, device)
        except ImageDecodeError as e:
            raise _image_error(HTTPException, e) from None
        except ValueError as e:
            raise HTTPException(400, str(e)) from None
        added = bool(await asyncio.wrap_future(fut))  # durable on disk before we answer
        return JSONResponse({"added": added, "entry": entry.to_dict(), "gallery_size": len(service.gallery)},
                            status_code=201 if added else 200)

    @app.delete("/gallery/{entry_id}", dependencies=auth)
    async def remove(entry_id: str) -> dict[str, Any]:
        fut = await run_in_threadpool(service.remove, [entry_id])
        if not await asyncio.wrap_future(fut):
            raise HTTPException(404, f"no gallery entry {entry_id!r}")
        return {"removed": entry_id, "gallery_size": len(service.gallery)}


def _names(values: list[str]) -> tuple[str, ...] | None:
    """Repeated and/or comma-separated values (camera=c1&camera=c2 or camera=c1,c2); None = no filter."""
    names = tuple(v.strip() for item in values for v in item.split(",") if v.strip())
    return names or None


def _image_error(exc: Any, e: ImageDecodeError) -> Any:
    msg = str(e)
    return exc(413 if "decompression bomb" in msg else 400, msg)
