"""What the KPI modules use of Cython's pure-Python mode, for installs without
Cython (it is needed only to compile them): the decorators do nothing, C types
are Python's own, and `compiled` is False."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

_T = TypeVar("_T")

compiled = False
int = int  # noqa: PLW0127 (Cython's names)


class _Subscripted:
    """`T[n]` (a C array) and `T[:]` (a typed memoryview) of the compiled build
    are lists here."""

    def __class_getitem__(cls, size: int | slice) -> type[list[Any]]:
        return list


class longlong(_Subscripted, int):
    """`cython.longlong`."""


class double(_Subscripted, float):
    """`cython.double`."""


Py_ssize_t = int
bint = bool


def _same(obj: _T) -> _T:
    return obj


cclass = cfunc = ccall = inline = final = no_gc = _same


def declare(_type: Any, value: _T) -> _T:
    """A C global in the compiled build; the value itself here."""
    return value


def cast(_type: Any, value: _T) -> _T:
    """A C cast in the compiled build; the value itself here."""
    return value


def locals(**_types: Any) -> Callable[[_T], _T]:
    return _same
