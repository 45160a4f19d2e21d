"""One generic registry for attacks, label-recovery methods, models, datasets and metrics.

Example:
    >>> MODELS = Registry("model")
    >>> @MODELS.register("lenet", description="DLG LeNet")
    ... def lenet(num_classes: int): ...
    >>> MODELS.get("lenet").obj
"""

from __future__ import annotations

import difflib
import fnmatch
from dataclasses import dataclass, field
from typing import Any, Callable, Generic, Iterable, TypeVar

from bench.errors import BenchError

T = TypeVar("T")


@dataclass(frozen=True)
class Entry(Generic[T]):
    name: str
    obj: T
    description: str
    info: dict[str, Any] = field(default_factory=dict)


class UnknownNameError(BenchError):
    pass


class Registry(Generic[T]):
    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, Entry[T]] = {}
        self._prefixes: dict[str, Callable[[str], Entry[T]]] = {}

    def register(self, name: str, description: str, **info: Any) -> Callable[[T], T]:
        """Decorator registering `obj` under `name`; a duplicate name raises."""

        def add(obj: T) -> T:
            self.add(name, obj, description, **info)
            return obj

        return add

    def add(self, name: str, obj: T, description: str, **info: Any) -> None:
        if name in self._entries:
            raise ValueError(f"duplicate {self.kind} name {name!r}")
        if not description or "\n" in description:
            raise ValueError(f"{self.kind} {name!r} needs a one-line description")
        self._entries[name] = Entry(name, obj, description, dict(info))

    def remove(self, name: str) -> None:
        """Drop a registration (what a block registered only for itself takes back; see bench.check_variants)."""
        if name not in self._entries:
            raise UnknownNameError(f"unknown {self.kind} {name!r}")
        del self._entries[name]

    def add_prefix(self, prefix: str, resolve: Callable[[str], Entry[T]]) -> None:
        """Names `prefix:rest` are resolved by `resolve(rest)` (e.g. `timm:<model>`)."""
        self._prefixes[prefix] = resolve

    def get(self, name: str) -> Entry[T]:
        if name in self._entries:
            return self._entries[name]
        prefix, sep, rest = name.partition(":")
        if sep and prefix in self._prefixes:
            return self._prefixes[prefix](rest)
        close = difflib.get_close_matches(name, list(self._entries), n=3, cutoff=0.4)
        hint = f"; did you mean {', '.join(close)}?" if close else f"; known: {', '.join(self.names())}"
        raise UnknownNameError(f"unknown {self.kind} {name!r}{hint}")

    def __contains__(self, name: str) -> bool:
        return name in self._entries

    def names(self, include: str | Iterable[str] = "*", exclude: str | Iterable[str] = ()) -> list[str]:
        """Registered names matching any include glob and no exclude glob, sorted."""
        inc = [include] if isinstance(include, str) else list(include)
        exc = [exclude] if isinstance(exclude, str) else list(exclude)
        return sorted(
            n
            for n in self._entries
            if any(fnmatch.fnmatch(n, p) for p in inc) and not any(fnmatch.fnmatch(n, p) for p in exc)
        )

    def select(self, patterns: Iterable[str]) -> list[str]:
        """Expand names and globs ('all' means '*'); an unmatched plain name raises with suggestions."""
        chosen: list[str] = []
        for pattern in patterns:
            pattern = "*" if pattern == "all" else pattern
            if any(ch in pattern for ch in "*?["):
                matches = self.names(pattern)
                if not matches:
                    raise UnknownNameError(f"no {self.kind} matches {pattern!r}; known: {', '.join(self.names())}")
            else:
                matches = [self.get(pattern).name]
            chosen.extend(m for m in matches if m not in chosen)
        return chosen

    def entries(self) -> list[Entry[T]]:
        return [self._entries[n] for n in self.names()]
