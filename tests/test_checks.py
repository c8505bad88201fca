"""The shared argument checks: good values pass (converted), bad ones name argument and rule."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from sampling_matters import _checks

# ---------------------------------------------------------------------------- integers


@pytest.mark.parametrize("value", [0, 3, -7, np.int64(5), np.int8(2), 2**70])
def test_is_integer_accepts_whole_numbers(value: object) -> None:
    assert _checks.is_integer(value)


@pytest.mark.parametrize(
    "value", [True, False, np.True_, 3.0, "3", None, torch.tensor(3), [3], 1 + 0j]
)
def test_is_integer_refuses_bools_floats_strings_and_tensors(value: object) -> None:
    assert not _checks.is_integer(value)


@pytest.mark.parametrize(
    ("value", "minimum", "maximum"), [(3, None, None), (2, 2, None), (4, 0, 4), (-5, None, 0)]
)
def test_integer_returns_a_python_int(value: int, minimum: int, maximum: int) -> None:
    assert _checks.integer("n", value, minimum, maximum) == value
    converted = _checks.integer("n", np.int64(value), minimum, maximum)
    assert type(converted) is int and converted == value


@pytest.mark.parametrize(
    ("value", "minimum", "maximum", "message"),
    [
        (1, 2, None, r"^dim must be an integer >= 2 \(points on a sphere\), got 1$"),
        (2.0, 2, None, r"^dim must be an integer >= 2 \(points on a sphere\), got 2\.0$"),
        (True, 0, None, r"^dim must be an integer >= 0 \(points on a sphere\), got True$"),
        (5, 0, 4, r"^dim must be an integer in \[0, 4\] \(points on a sphere\), got 5$"),
        (-1, 0, 4, r"^dim must be an integer in \[0, 4\]"),
        (9, None, 8, r"^dim must be an integer <= 8"),
        ("3", None, None, r"^dim must be an integer \(points on a sphere\), got '3'$"),
        (0, 1, None, r"^dim must be a positive integer \(points on a sphere\), got 0$"),
    ],
)
def test_integer_names_the_argument_and_the_rule(
    value: object, minimum: int | None, maximum: int | None, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        _checks.integer("dim", value, minimum, maximum, why="points on a sphere")


def test_integer_without_why_has_no_parentheses() -> None:
    with pytest.raises(ValueError, match=r"^seed must be an integer, got 0\.5$"):
        _checks.integer("seed", 0.5)


def test_positive_int() -> None:
    assert _checks.positive_int("bins", 1) == 1
    assert _checks.positive_int("bins", np.int32(7)) == 7
    for bad in (0, -3, 1.5, True, None, "2"):
        with pytest.raises(ValueError, match=r"^bins must be a positive integer, got "):
            _checks.positive_int("bins", bad)
    with pytest.raises(ValueError, match=r"steps must be a positive integer \(the budget\)"):
        _checks.positive_int("steps", 0, why="the budget")


def test_positive_int_or_none() -> None:
    assert _checks.positive_int_or_none("chunk_size", None) is None
    assert _checks.positive_int_or_none("chunk_size", 4) == 4
    assert type(_checks.positive_int_or_none("chunk_size", np.int64(4))) is int
    for bad in (0, -1, 2.5, True, "4"):
        with pytest.raises(ValueError, match=r"^chunk_size must be a positive integer or None"):
            _checks.positive_int_or_none("chunk_size", bad)


# ----------------------------------------------------------------------------- numbers


@pytest.mark.parametrize("value", [0, 1.5, -2, np.float32(0.25), np.int64(3)])
def test_is_number_accepts_reals(value: object) -> None:
    assert _checks.is_number(value)


@pytest.mark.parametrize("value", [True, np.False_, "1.0", None, 1j, torch.tensor(1.0)])
def test_is_number_refuses_bools_strings_complex_and_tensors(value: object) -> None:
    assert not _checks.is_number(value)


def test_finite_float_returns_a_float() -> None:
    assert _checks.finite_float("beta", -3) == -3.0
    assert type(_checks.finite_float("beta", 2)) is float
    assert type(_checks.finite_float("beta", np.float32(0.5))) is float
    assert _checks.finite_float("margin", 0.0, 0) == 0.0
    assert _checks.finite_float("far", 1, 0, 1) == 1.0
    assert _checks.finite_float("far", 0, 0, 1) == 0.0


@pytest.mark.parametrize(
    "value", [math.nan, math.inf, -math.inf, np.float64("nan"), 10**400, True, "1", None, 1j]
)
def test_finite_float_refuses_non_finite_and_non_numbers(value: object) -> None:
    with pytest.raises(ValueError, match=r"^beta must be a finite number, got "):
        _checks.finite_float("beta", value)


@pytest.mark.parametrize(
    ("value", "low", "high", "low_open", "message"),
    [
        (0.0, 0, None, True, r"^margin must be a finite number > 0, got 0\.0$"),
        (-0.1, 0, None, False, r"^margin must be a finite number >= 0, got -0\.1$"),
        (1.5, 0, 1, False, r"^margin must be a finite number in \[0, 1\], got 1\.5$"),
        (0, 0, 1, True, r"^margin must be a finite number in \(0, 1\], got 0$"),
        (3, None, 2, False, r"^margin must be a finite number <= 2, got 3$"),
        (math.nan, 0, 1, False, r"^margin must be a finite number in \[0, 1\], got nan$"),
    ],
)
def test_finite_float_names_the_bounds(
    value: object, low: float | None, high: float | None, low_open: bool, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        _checks.finite_float("margin", value, low, high, low_open=low_open)


def test_finite_float_gives_the_reason() -> None:
    with pytest.raises(ValueError, match=r"far must be a finite number in \[0, 1\] \(a rate\)"):
        _checks.finite_float("far", 2.0, 0, 1, why="a rate")


def test_one_of() -> None:
    assert _checks.one_of("metric", "cosine", ("euclidean", "cosine")) == "cosine"
    with pytest.raises(
        ValueError, match=r"^metric must be one of \('euclidean', 'cosine'\), got 'l1'$"
    ):
        _checks.one_of("metric", "l1", ("euclidean", "cosine"))


# ----------------------------------------------------------------------------- tensors


def test_describe() -> None:
    assert _checks.describe(torch.zeros(2, 3)) == "a 2-d torch.float32 tensor of shape (2, 3)"
    assert _checks.describe([1, 2]) == "list"


@pytest.mark.parametrize("dtype", [torch.int8, torch.int32, torch.int64, torch.uint8])
def test_integer_dtypes(dtype: torch.dtype) -> None:
    assert _checks.is_integer_dtype(torch.zeros(2, dtype=dtype))


@pytest.mark.parametrize("dtype", [torch.float16, torch.float32, torch.bool, torch.complex64])
def test_non_integer_dtypes(dtype: torch.dtype) -> None:
    assert not _checks.is_integer_dtype(torch.zeros(2, dtype=dtype))


def test_embeddings_2d_accepts_floating_matrices() -> None:
    for dtype in (torch.float16, torch.bfloat16, torch.float32, torch.float64):
        _checks.embeddings_2d(torch.zeros(3, 2, dtype=dtype), finite=True)
    _checks.embeddings_2d(torch.zeros(0, 4))  # no rows is fine
    nan = torch.tensor([[math.nan]])
    _checks.embeddings_2d(nan)  # finiteness only when asked


@pytest.mark.parametrize(
    ("x", "message"),
    [
        ([[0.0, 1.0]], r"^x must be a torch\.Tensor of shape \(N, D\), got <class 'list'>$"),
        (torch.zeros(3), r"^x must have shape \(N, D\) with D >= 1, got \(3,\)$"),
        (torch.zeros(3, 0), r"^x must have shape \(N, D\) with D >= 1, got \(3, 0\)$"),
        (torch.zeros(3, 2, dtype=torch.long), r"^x must be a floating-point tensor, got torch"),
        (torch.tensor([[0.0, math.nan]]), r"^x must be finite, got NaN or Inf values$"),
        (torch.tensor([[math.inf, 0.0]]), r"^x must be finite"),
    ],
)
def test_embeddings_2d_refuses(x: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        _checks.embeddings_2d(x, "x", finite=True)


def test_labels_1d() -> None:
    _checks.labels_1d(torch.tensor([0, 1, 1]), 3)
    _checks.labels_1d(torch.tensor([0, 1], dtype=torch.int32), 2)
    cases = [
        (torch.zeros(2, 2, dtype=torch.long), 4, r"^labels must be a 1-d tensor of class ids"),
        ([0, 1], 2, r"^labels must be a 1-d tensor of class ids, got list$"),
        (torch.tensor([0.0, 1.0]), 2, r"^labels must be an integer tensor of class ids"),
        (torch.tensor([True, False]), 2, r"integer tensor of class ids, got torch\.bool"),
        (
            torch.tensor([0, 1]),
            3,
            r"^labels and embeddings must have the same length N, got 2 labels for 3 embeddings$",
        ),
    ]
    for labels, n, message in cases:
        with pytest.raises(ValueError, match=message):
            _checks.labels_1d(labels, n)
    with pytest.raises(ValueError, match=r"^targets and rows must have the same length N"):
        _checks.labels_1d(torch.tensor([0]), 2, name="targets", of="rows")


def test_index_tensor() -> None:
    _checks.index_tensor("i", torch.tensor([0, 2]), 3)
    _checks.index_tensor("i", torch.tensor([0, 2], dtype=torch.int32), 3)
    _checks.index_tensor("i", torch.tensor([5, -1]))  # no bound: no range check
    _checks.index_tensor("i", torch.zeros(0, dtype=torch.long), 0)
    cases = [
        (torch.tensor([0.0]), {}, r"^i must be a 1-d integer tensor, got a 1-d torch\.float32"),
        (torch.tensor([[0]]), {}, r"^i must be a 1-d integer tensor, got a 2-d"),
        ([0, 1], {}, r"^i must be a 1-d integer tensor, got list$"),
        (torch.tensor([0], dtype=torch.int32), {"int64": True}, r"^i must be a 1-d int64 tensor"),
        (
            torch.tensor([0, 3]),
            {"upper": 3, "bound": "n_items"},
            r"^i must lie in \[0, n_items\) = \[0, 3\), got values from 0 to 3$",
        ),
        (torch.tensor([-1, 1]), {"upper": 3}, r"^i must lie in \[0, N\) = \[0, 3\), got values"),
    ]
    for index, kwargs, message in cases:
        with pytest.raises(ValueError, match=message):
            _checks.index_tensor("i", index, **kwargs)


def test_same_device() -> None:
    x = torch.zeros(2)
    _checks.same_device("labels", x, torch.zeros(2, 3))
    meta = torch.zeros(2, device="meta")
    with pytest.raises(ValueError, match=r"^labels is on meta but embeddings on cpu$"):
        _checks.same_device("labels", meta, torch.zeros(2, 3))
    with pytest.raises(ValueError, match=r"^gallery is on meta but queries on cpu$"):
        _checks.same_device("gallery", meta, x, "queries")
