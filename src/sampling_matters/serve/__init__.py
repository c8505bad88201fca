"""The search service: an HTTP JSON API over a faiss index, and a page to try it.

``sampling-matters serve INDEX`` runs it with uvicorn; :func:`create_app` makes the
application for any ASGI server or for FastAPI's ``TestClient``. The modules:
:mod:`~sampling_matters.serve.app` (the routes, the errors as JSON, the page),
:mod:`~sampling_matters.serve.queries` (a request read and checked: the upload cap, the
image decoded in full), :mod:`~sampling_matters.serve.service` (the search itself,
without HTTP). The page is ``static/`` (HTML, JavaScript, CSS; no build step).

FastAPI, uvicorn and python-multipart come with the ``serve`` extra; importing this
package without one of them raises an ``ImportError`` that names the extra.
"""

from sampling_matters._optional import require

for _module in ("fastapi", "python_multipart", "uvicorn"):
    require(_module)  # a missing one: "this needs …: pip install 'sampling-matters[serve]'"

from sampling_matters.serve.app import (  # noqa: E402 (after the check above)
    DEFAULT_MAX_K,
    DEFAULT_MAX_UPLOAD_BYTES,
    create_app,
)

__all__ = ["DEFAULT_MAX_K", "DEFAULT_MAX_UPLOAD_BYTES", "create_app"]
