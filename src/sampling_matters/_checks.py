"""The argument checks the package shares: one wording for one kind of mistake.

Every check raises ``ValueError`` naming the argument, saying what is expected and
what was given (``"bins must be a positive integer, got 0"``). Checks of Python
numbers return the value converted (``int``, ``float``); checks of tensors return
nothing. ``bool`` is never an integer or a number here, although Python says it is.
NumPy's integers and floats are accepted where Python's are.

This module is the lowest layer: it imports nothing of the package.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Collection
from typing import TypeVar

import torch
from torch import Tensor

T = TypeVar("T")


# ---------------------------------------------------------------------------- numbers


def is_integer(value: object) -> bool:
    """Whether ``value`` is an integer (Python's or NumPy's), not a bool.

    Example:
        >>> is_integer(3), is_integer(True), is_integer(3.0)
        (True, False, False)
    """
    return _as_int(value) is not None


def is_number(value: object) -> bool:
    """Whether ``value`` is a real number (int or float, Python's or NumPy's), not a bool."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _as_int(value: object) -> int | None:
    """``value`` as an int if it is an integer (not a bool), else None."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        return None
    return int(value)


def integer(
    name: str,
    value: object,
    minimum: int | None = None,
    maximum: int | None = None,
    *,
    why: str = "",
) -> int:
    """``value`` as an int if it is an integer in [minimum, maximum], else ``ValueError``.

    Args:
        name: how the message names the argument.
        value: the value to check.
        minimum: the smallest value allowed, or None for no bound.
        maximum: the largest value allowed, or None for no bound.
        why: the reason for the bounds, given in parentheses after them.

    Example:
        >>> integer("dim", 3, 2)
        3
        >>> integer("dim", 1, 2, why="points on S^(dim-1)")
        Traceback (most recent call last):
        ...
        ValueError: dim must be an integer >= 2 (points on S^(dim-1)), got 1
    """
    number = _as_int(value)
    if (
        number is None
        or (minimum is not None and number < minimum)
        or (maximum is not None and number > maximum)
    ):
        reason = f" ({why})" if why else ""
        raise ValueError(f"{name} must be {_integers(minimum, maximum)}{reason}, got {value!r}")
    return number


def _integers(minimum: int | None, maximum: int | None) -> str:
    if minimum is not None and maximum is not None:
        return f"an integer in [{minimum}, {maximum}]"
    if minimum == 1:
        return "a positive integer"
    if minimum is not None:
        return f"an integer >= {minimum}"
    return "an integer" if maximum is None else f"an integer <= {maximum}"


def positive_int(name: str, value: object, *, why: str = "") -> int:
    """``value`` as an int if it is an integer ≥ 1, else ``ValueError``.

    Example:
        >>> positive_int("bins", 0)
        Traceback (most recent call last):
        ...
        ValueError: bins must be a positive integer, got 0
    """
    return integer(name, value, 1, why=why)


def positive_int_or_none(name: str, value: object) -> int | None:
    """``value`` as an int if it is an integer ≥ 1, None if None, else ``ValueError``."""
    if value is None:
        return None
    number = _as_int(value)
    if number is None or number < 1:
        raise ValueError(f"{name} must be a positive integer or None, got {value!r}")
    return number


def finite_float(
    name: str,
    value: object,
    low: float | None = None,
    high: float | None = None,
    *,
    low_open: bool = False,
    why: str = "",
) -> float:
    """``value`` as a float if it is a finite number in the range, else ``ValueError``.

    Args:
        name: how the message names the argument.
        value: the value to check.
        low: the lower bound, or None for none.
        high: the upper bound (included), or None for none.
        low_open: exclude ``low`` itself (``> low`` rather than ``>= low``).
        why: the reason for the bounds, given in parentheses after them.

    Example:
        >>> finite_float("far", 0.5, 0, 1)
        0.5
        >>> finite_float("margin", 0.0, 0, low_open=True)
        Traceback (most recent call last):
        ...
        ValueError: margin must be a finite number > 0, got 0.0
    """
    number = _as_finite_float(value)
    if (
        number is None
        or (low is not None and (number <= low if low_open else number < low))
        or (high is not None and number > high)
    ):
        reason = f" ({why})" if why else ""
        bounds = _bounds(low, high, low_open)
        raise ValueError(f"{name} must be a finite number{bounds}{reason}, got {value!r}")
    return number


def _as_finite_float(value: object) -> float | None:
    """``value`` as a float if it is a finite real number (not a bool), else None."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return None
    try:
        number = float(value)
    except OverflowError:  # an int too large for a float
        return None
    return number if math.isfinite(number) else None


def _bounds(low: float | None, high: float | None, low_open: bool) -> str:
    if low is not None and high is not None:
        return f" in {'(' if low_open else '['}{low:g}, {high:g}]"
    if low is not None:
        return f" {'>' if low_open else '>='} {low:g}"
    return "" if high is None else f" <= {high:g}"


def one_of(name: str, value: T, allowed: Collection[T]) -> T:
    """``value`` if it is one of ``allowed``, else ``ValueError`` listing them.

    Example:
        >>> one_of("metric", "manhattan", ("euclidean", "cosine"))
        Traceback (most recent call last):
        ...
        ValueError: metric must be one of ('euclidean', 'cosine'), got 'manhattan'
    """
    if value not in allowed:
        raise ValueError(f"{name} must be one of {tuple(allowed)}, got {value!r}")
    return value


# ---------------------------------------------------------------------------- tensors


def describe(x: object) -> str:
    """A tensor's rank, dtype and shape, or another object's type, for a message.

    Example:
        >>> describe(torch.zeros(2, 3)), describe([1, 2])
        ('a 2-d torch.float32 tensor of shape (2, 3)', 'list')
    """
    if isinstance(x, Tensor):
        return f"a {x.dim()}-d {x.dtype} tensor of shape {tuple(x.shape)}"
    return type(x).__name__


def is_integer_dtype(x: Tensor) -> bool:
    """Whether ``x`` holds integers (any width), not floats, complex numbers or bools."""
    return not (x.is_floating_point() or x.is_complex() or x.dtype == torch.bool)


def embeddings_2d(embeddings: object, name: str = "embeddings", *, finite: bool = False) -> None:
    """Raise ``ValueError`` unless ``embeddings`` is a floating (N, D) tensor with D ≥ 1.

    Args:
        embeddings: the tensor to check.
        name: how the message names it.
        finite: also require finite values (one pass and a host-device sync).
    """
    if not isinstance(embeddings, Tensor):
        raise ValueError(f"{name} must be a torch.Tensor of shape (N, D), got {type(embeddings)}")
    if embeddings.dim() != 2 or embeddings.shape[1] < 1:
        raise ValueError(
            f"{name} must have shape (N, D) with D >= 1, got {tuple(embeddings.shape)}"
        )
    if not embeddings.is_floating_point():
        raise ValueError(f"{name} must be a floating-point tensor, got {embeddings.dtype}")
    if finite and not bool(torch.isfinite(embeddings).all()):
        raise ValueError(f"{name} must be finite, got NaN or Inf values")


def labels_1d(labels: object, n: int, *, name: str = "labels", of: str = "embeddings") -> None:
    """Raise ``ValueError`` unless ``labels`` is an integer (N,) tensor, N = ``n``.

    Args:
        labels: the tensor to check: one class id per row of ``of``.
        n: N, the number of rows the labels go with.
        name: how the message names the labels.
        of: how the message names what the labels go with.
    """
    if not isinstance(labels, Tensor) or labels.dim() != 1:
        raise ValueError(f"{name} must be a 1-d tensor of class ids, got {describe(labels)}")
    if not is_integer_dtype(labels):
        raise ValueError(f"{name} must be an integer tensor of class ids, got {labels.dtype}")
    if len(labels) != n:
        raise ValueError(
            f"{name} and {of} must have the same length N, got {len(labels)} {name} for {n} {of}"
        )


def index_tensor(
    name: str, index: object, upper: int | None = None, *, bound: str = "N", int64: bool = False
) -> None:
    """Raise ``ValueError`` unless ``index`` is a 1-d integer tensor with values in [0, upper).

    Args:
        name: how the message names the tensor.
        index: the tensor to check.
        upper: the exclusive upper bound, or None for no range check (which saves a
            host-device sync).
        bound: how the message names ``upper``.
        int64: require int64 rather than any integer dtype.

    Example:
        >>> index_tensor("indices", torch.tensor([0, 3]), 3, bound="n_items")
        Traceback (most recent call last):
        ...
        ValueError: indices must lie in [0, n_items) = [0, 3), got values from 0 to 3
    """
    expected = "int64" if int64 else "integer"
    if (
        not isinstance(index, Tensor)
        or index.dim() != 1
        or not (index.dtype == torch.int64 if int64 else is_integer_dtype(index))
    ):
        raise ValueError(f"{name} must be a 1-d {expected} tensor, got {describe(index)}")
    if upper is not None and index.numel() and bool(((index < 0) | (index >= upper)).any()):
        low, high = int(index.min()), int(index.max())
        raise ValueError(
            f"{name} must lie in [0, {bound}) = [0, {upper}), got values from {low} to {high}"
        )


def same_device(name: str, x: Tensor, like: Tensor, like_name: str = "embeddings") -> None:
    """Raise ``ValueError`` unless ``x`` is on the device of ``like``."""
    if x.device != like.device:
        raise ValueError(f"{name} is on {x.device} but {like_name} on {like.device}")
