"""Dataclass fields checked against their annotated types, ranges included, the same way for every source.

A field's annotation is its whole rule: `Annotated[int, Ge(1)]`, `Axis[Rate]` (a non-empty tuple of
distinct rates), `Literal[...]`. pydantic checks each value in strict mode (no "1.5" -> 1, no True -> 1)
and the first problem becomes one line naming the field and the value.

Example:
    >>> @dataclass(frozen=True)
    ... class Grid:
    ...     sizes: Axis[Count] = (4,)
    ...     def __post_init__(self) -> None:
    ...         check_fields(self)
    >>> Grid(sizes=(0,))
    FieldError: sizes[0]: Input should be greater than or equal to 1 (got 0)
"""

from __future__ import annotations

import dataclasses
import functools
import typing
from typing import Annotated, Any, TypeVar

from annotated_types import Ge, Lt, MinLen
from pydantic import AfterValidator, TypeAdapter, ValidationError

from bench.errors import BenchError

T = TypeVar("T")


def _distinct(values: tuple) -> tuple:
    repeated = sorted({repr(v) for v in values if values.count(v) > 1})
    if repeated:
        raise ValueError(f"{', '.join(repeated)} given more than once")
    return values


Count = Annotated[int, Ge(1)]
NonNegative = Annotated[int, Ge(0)]
Seed = Annotated[int, Ge(0), Lt(2**63)]  # numpy and torch seeds: non-negative 64-bit
Rate = Annotated[float, Ge(0.0), Lt(1.0)]
Name = Annotated[str, MinLen(1)]
Axis = Annotated[tuple[T, ...], MinLen(1), AfterValidator(_distinct)]  # one axis of a grid


class FieldError(BenchError):
    """A field's value does not fit its type; `field` names it, `problem` says how."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field, self.problem = field, problem


@functools.cache
def _adapters(cls: type) -> dict[str, TypeAdapter]:
    hints = typing.get_type_hints(cls, include_extras=True)
    return {f.name: TypeAdapter(hints[f.name]) for f in dataclasses.fields(cls)}


def _where(loc: tuple) -> str:
    return "".join(f"[{part!r}]" if isinstance(part, str) else f"[{part}]" for part in loc if part != "[key]")


def check_fields(instance: Any) -> None:
    """Raise FieldError for the first field of dataclass `instance` whose value does not fit its type."""
    checked_values(instance)


def checked_values(instance: Any) -> dict[str, Any]:
    """Each field of dataclass `instance` as its type reads it (an int given for a float becomes a float);
    FieldError for the first value that does not fit."""
    values = {}
    for name, adapter in _adapters(type(instance)).items():
        try:
            values[name] = adapter.validate_python(getattr(instance, name), strict=True)
        except ValidationError as err:
            first = err.errors(include_url=False)[0]
            message = first["msg"].removeprefix("Value error, ")
            raise FieldError(f"{name}{_where(first['loc'])}", f"{message} (got {first['input']!r})") from None
    return values
