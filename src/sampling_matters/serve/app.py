"""The FastAPI application: the JSON API, the page and its static files.

Routes (every error is JSON ``{"detail": MESSAGE}`` with a 4xx status, never a
traceback):

- ``POST /api/search``: a multipart form (``image``, ``k``) or JSON ``{"id": ID, "k": K}``
  → ``{"neighbours": [{"id", "label", "distance", "image_url"}, …]}``, best first; a
  search by id leaves the item itself out.
- ``GET /api/items/{id}``: the item's ``id``, ``label``, ``item`` and ``image_url``;
  ``GET /api/items/{id}/image``: its image as PNG; ``GET /api/items/random``: a random
  item's metadata. Images are served for indexed ids only, never for a path.
- ``GET /healthz``: the index's size and dimension, the model, the limits.
- ``GET /``: the page (``static/index.html``, with ``app.js`` and ``style.css``).

The model and the index are loaded once, before the app is made; searches run in the
server's thread pool and share them (:class:`~sampling_matters.serve.service.SearchService`).
"""

from __future__ import annotations

import logging
from importlib import resources
from typing import Any

from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException

from sampling_matters.index import Index, QueryEmbedder
from sampling_matters.serve.queries import DEFAULT_K, Query, QueryError, decode_image, read_query
from sampling_matters.serve.service import (
    BadQueryError,
    Neighbour,
    SearchService,
    UnknownItemError,
)

__all__ = ["DEFAULT_MAX_K", "DEFAULT_MAX_UPLOAD_BYTES", "create_app"]

DEFAULT_MAX_UPLOAD_BYTES = 10 * 2**20
"""The largest image file a search may upload: 10 MiB."""

DEFAULT_MAX_K = 100
"""The most neighbours a search may ask for."""

PAGE_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' blob:; style-src 'self'; script-src 'self'; "
        "object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
}
"""Headers of the page: it runs only its own script and shows only the API's images."""

_log = logging.getLogger("sampling_matters.serve")


def create_app(
    index: Index,
    embedder: QueryEmbedder,
    *,
    max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES,
    max_k: int = DEFAULT_MAX_K,
) -> FastAPI:
    """The search service of ``index``, its queries embedded by ``embedder``.

    Args:
        index: a loaded index (:func:`sampling_matters.index.load`).
        embedder: the run's model (:class:`sampling_matters.index.QueryEmbedder`, e.g.
            ``QueryEmbedder.for_index(index)``); it must be the model the index was built
            with.
        max_upload_bytes: the largest image file a search may upload (413 above it).
        max_k: the most neighbours a search may ask for (422 above it, or above the
            index's size - 1).

    Returns:
        The application, to run with uvicorn or to test with FastAPI's ``TestClient``.

    Raises:
        ValueError: the model does not match the index, the index holds fewer than 2
            items, ``max_upload_bytes`` or ``max_k`` below 1.
    """
    if max_upload_bytes < 1:
        raise ValueError(f"max_upload_bytes must be >= 1, got {max_upload_bytes}")
    service = SearchService(index, embedder, max_k=max_k)
    app = FastAPI(
        title="sampling-matters search",
        summary=f"nearest neighbours among {len(index)} indexed items",
        docs_url=None,  # Swagger UI would load its files from the internet
        redoc_url=None,
        openapi_url="/api/openapi.json",
    )
    app.state.service, app.state.max_upload_bytes = service, max_upload_bytes
    _add_error_handlers(app)
    _add_api(app, service, max_upload_bytes)
    _add_page(app)
    return app


def _add_api(app: FastAPI, service: SearchService, max_upload_bytes: int) -> None:
    default_k = min(DEFAULT_K, service.max_k)

    @app.post("/api/search")
    async def search(request: Request) -> dict[str, Any]:
        """Nearest items of an uploaded image (multipart form) or of an item (JSON id)."""
        query = await read_query(request, max_upload_bytes=max_upload_bytes, default_k=default_k)
        found = await run_in_threadpool(_run, service, query)
        return {"neighbours": [_neighbour(request, n.id, n.label, n.distance) for n in found]}

    @app.get("/api/items/random")
    def random_item(request: Request) -> dict[str, Any]:
        """A random indexed item's metadata (the page's "random item")."""
        return _item(request, service, service.random_id())

    @app.get("/api/items/{item_id}")
    def item(request: Request, item_id: int) -> dict[str, Any]:
        """An indexed item's id, label, name and image URL."""
        return _item(request, service, item_id)

    @app.get("/api/items/{item_id}/image", response_class=Response)
    def item_image(item_id: int) -> Response:
        """An indexed item's image, as PNG."""
        return Response(
            service.item_png(item_id),
            media_type="image/png",
            headers={"Cache-Control": "max-age=3600", "X-Content-Type-Options": "nosniff"},
        )

    @app.get("/healthz")
    def healthz() -> dict[str, Any]:
        """The index's size and dimension, the model that embeds queries, the limits."""
        return {**service.health(), "max_upload_bytes": max_upload_bytes}


def _run(service: SearchService, query: Query) -> list[Neighbour]:
    """Run a checked query (in a worker thread: decoding and the model take CPU time)."""
    service.check_k(query.k)
    if query.item_id is not None:
        return service.search_item(query.item_id, query.k)
    assert query.image is not None  # a Query holds one of the two
    return service.search_image(decode_image(query.image, _mode(service)), query.k)


def _mode(service: SearchService) -> str:
    return "RGB" if service.kind == "photo" else "L"


def _image_url(request: Request, item_id: int) -> str:
    return f"{request.scope.get('root_path', '')}/api/items/{item_id}/image"


def _neighbour(request: Request, item_id: int, label: int, distance: float) -> dict[str, Any]:
    return {
        "id": item_id,
        "label": label,
        "distance": distance,
        "image_url": _image_url(request, item_id),
    }


def _item(request: Request, service: SearchService, item_id: int) -> dict[str, Any]:
    return {**service.item(item_id), "image_url": _image_url(request, item_id)}


def _add_page(app: FastAPI) -> None:
    static = resources.files("sampling_matters.serve") / "static"
    page = (static / "index.html").read_text(encoding="utf-8")
    app.mount(
        "/static", StaticFiles(packages=[("sampling_matters.serve", "static")]), name="static"
    )

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def home() -> HTMLResponse:
        return HTMLResponse(page, headers=PAGE_HEADERS)


def _add_error_handlers(app: FastAPI) -> None:
    """Every error as JSON ``{"detail": MESSAGE}``: 4xx with the reason, 500 without a trace."""

    def refuse(status: int, message: str) -> JSONResponse:
        return JSONResponse({"detail": message}, status_code=status)

    async def query_error(request: Request, error: Exception) -> JSONResponse:
        assert isinstance(error, QueryError)
        return refuse(error.status, error.message)

    async def unknown_item(request: Request, error: Exception) -> JSONResponse:
        return refuse(404, str(error.args[0]) if error.args else "no such item")

    async def bad_query(request: Request, error: Exception) -> JSONResponse:
        return refuse(422, str(error))

    async def invalid(request: Request, error: Exception) -> JSONResponse:
        assert isinstance(error, RequestValidationError)
        return refuse(422, "; ".join(_validation_message(e) for e in error.errors()))

    async def http_error(request: Request, error: Exception) -> JSONResponse:
        assert isinstance(error, HTTPException)
        return JSONResponse(
            {"detail": str(error.detail)}, status_code=error.status_code, headers=error.headers
        )

    async def internal(request: Request, error: Exception) -> JSONResponse:
        _log.exception("%s %s failed", request.method, request.url.path, exc_info=error)
        return refuse(500, f"internal error ({type(error).__name__}); the server log has more")

    app.add_exception_handler(QueryError, query_error)
    app.add_exception_handler(UnknownItemError, unknown_item)
    app.add_exception_handler(BadQueryError, bad_query)
    app.add_exception_handler(RequestValidationError, invalid)
    app.add_exception_handler(HTTPException, http_error)
    app.add_exception_handler(Exception, internal)


def _validation_message(error: Any) -> str:
    """One of FastAPI's validation errors as ``where: what (got VALUE)``."""
    where = ".".join(str(part) for part in error.get("loc", ()) if part not in ("path", "body"))
    got = f" (got {error['input']!r})" if "input" in error else ""
    return f"{where or 'request'}: {error.get('msg', 'invalid')}{got}"[:300]
