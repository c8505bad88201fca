"""A search request, read and checked: an uploaded image or an item id, and ``k``.

``POST /api/search`` takes a multipart form (``image``: the file; ``k``) or a JSON body
``{"id": ID, "k": K}``. The body is read up to a cap before anything parses it, so an
oversize upload costs the server no more than the cap; an image is decoded in full
(a truncated file fails here, not in the model) from a short list of formats. Every
problem is a :class:`QueryError` that carries the HTTP status and a one-line message.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from typing import Any

from fastapi import Request
from PIL import Image, UnidentifiedImageError

__all__ = [
    "DEFAULT_K",
    "FORMATS",
    "FORM_OVERHEAD",
    "MAX_PIXELS",
    "Query",
    "QueryError",
    "decode_image",
    "read_query",
]

DEFAULT_K = 10
"""Neighbours returned when a request gives no ``k`` (capped at the server's maximum)."""

FORMATS = ("PNG", "JPEG", "GIF", "BMP", "WEBP")
"""The image formats an upload may be in (Pillow's names)."""

MAX_PIXELS = 40_000_000
"""The most pixels an uploaded image may have (a small file can decode to a huge image)."""

FORM_OVERHEAD = 64 * 1024
"""Bytes a multipart body may hold beyond the image's cap (boundaries, headers, ``k``)."""


class QueryError(Exception):
    """A request the API refuses: ``status`` (4xx) and a message saying what was wrong."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


@dataclass(frozen=True)
class Query:
    """A search to run: exactly one of ``image`` (encoded bytes) and ``item_id``, and ``k``."""

    k: int
    image: bytes | None = None
    item_id: int | None = None


async def read_query(request: Request, *, max_upload_bytes: int, default_k: int) -> Query:
    """The query of a ``POST /api/search`` request, by its content type.

    Raises:
        QueryError: 413 for a body over the cap, 415 for another content type, 400 for a
            body that is no form or no JSON, 422 for a missing or mistyped field.
    """
    kind = request.headers.get("content-type", "").partition(";")[0].strip().lower()
    if kind not in ("multipart/form-data", "application/json"):
        raise QueryError(
            415,
            f"send a multipart form (fields 'image' and 'k') or a JSON body "
            f'{{"id": ID, "k": K}}; got the content type {kind or "none"!r}',
        )
    limit = max_upload_bytes + (FORM_OVERHEAD if kind == "multipart/form-data" else 0)
    body = await _read_capped(request, limit, max_upload_bytes)
    if kind == "application/json":
        return _json_query(body, default_k)
    return await _form_query(request, body, max_upload_bytes, default_k)


async def _read_capped(request: Request, limit: int, max_upload_bytes: int) -> bytes:
    """The request's body, refused (413) as soon as it passes ``limit`` bytes."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise _too_large(int(declared), max_upload_bytes)
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _too_large(size, max_upload_bytes, at_least=True)
        chunks.append(chunk)
    return b"".join(chunks)


def _too_large(size: int, max_upload_bytes: int, at_least: bool = False) -> QueryError:
    return QueryError(
        413,
        f"the upload is {'more than ' if at_least else ''}{size} bytes; the limit is "
        f"{max_upload_bytes} bytes ({max_upload_bytes / 2**20:g} MiB)",
    )


def _json_query(body: bytes, default_k: int) -> Query:
    try:
        fields = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise QueryError(400, f"the body is no valid JSON ({error})") from None
    if not isinstance(fields, dict):
        raise QueryError(422, f'expected a JSON object {{"id": ID, "k": K}}, got {body[:80]!r}')
    unknown = sorted(set(fields) - {"id", "k"})
    if unknown:
        raise QueryError(422, f"unknown fields {unknown}: a search by id takes 'id' and 'k'")
    if "id" not in fields:
        raise QueryError(422, "'id' is missing: give an item's id, or upload an image as a form")
    item_id = _integer(fields["id"], "id", text=False)
    return Query(k=_integer(fields.get("k", default_k), "k", text=False), item_id=item_id)


async def _form_query(
    request: Request, body: bytes, max_upload_bytes: int, default_k: int
) -> Query:
    form = await Request(request.scope, _replay(body)).form(max_files=1, max_fields=4)
    unknown = sorted(set(form.keys()) - {"image", "k"})
    if unknown:
        raise QueryError(422, f"unknown form fields {unknown}: a search form has 'image' and 'k'")
    upload = form.get("image")
    if upload is None or isinstance(upload, str):
        raise QueryError(422, "the form has no file in its 'image' field")
    image = await upload.read()
    if len(image) > max_upload_bytes:
        raise _too_large(len(image), max_upload_bytes)
    k = form.get("k")
    return Query(k=default_k if k in (None, "") else _integer(k, "k", text=True), image=image)


def _replay(body: bytes) -> Any:
    """An ASGI ``receive`` that hands over a body already read, once."""
    sent = False

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return receive


def _integer(value: object, name: str, *, text: bool) -> int:
    """``value`` as an int: a JSON integer or, from a form (``text``), its decimal text."""
    if text and isinstance(value, str) and value.strip().lstrip("+-").isdigit():
        return int(value.strip())
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    raise QueryError(422, f"{name!r} must be an integer, got {value!r}"[:200])


def decode_image(data: bytes, mode: str) -> Image.Image:
    """Decode an uploaded image in full and convert it to ``mode`` (``"L"`` or ``"RGB"``).

    Raises:
        QueryError: 400 for an empty, unreadable, truncated or unsupported file, 413 for
            an image of more than :data:`MAX_PIXELS` pixels.
    """
    if not data:
        raise QueryError(400, "the uploaded file is empty")
    try:
        with Image.open(io.BytesIO(data), formats=FORMATS) as opened:
            pixels = opened.width * opened.height
            if pixels > MAX_PIXELS:
                raise QueryError(
                    413, f"the image has {pixels} pixels; the limit is {MAX_PIXELS} pixels"
                )
            opened.load()  # decodes everything: a truncated file fails here
            return opened.convert(mode)
    except UnidentifiedImageError:
        raise QueryError(
            400, f"the upload is no image in a format the server reads ({', '.join(FORMATS)})"
        ) from None
    except Image.DecompressionBombError as error:
        raise QueryError(413, f"the image is too large to decode ({error})") from None
    except (OSError, ValueError, SyntaxError, EOFError) as error:
        raise QueryError(
            400,
            f"cannot read the upload as an image ({' '.join(str(error).split())[:200]}); "
            f"send a complete {', '.join(FORMATS)} file",
        ) from None
