"""Search spaces: the hyperparameters an attack declares for tuning, each with its range and scale.

An attack lists its space beside its Config (`search_space = {"lr": Real(1e-3, 1.0, log=True)}`); each name
is a field of the Config (tests/test_tune.py checks every registered attack); a field that acts only under
some settings (`search_space_acts_when`) is left out of the variants without them. `bench tune`
(bench.tune) asks Optuna for one value per field and trial.

Example:
    >>> space = {"lr": Real(1e-3, 1.0, log=True), "restarts": Integer(1, 4)}
    >>> space_text(space)
    'lr in [0.001, 1] (log), restarts in [1, 4]'
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Mapping, Union

from bench.errors import BenchError


@dataclass(frozen=True)
class Real:
    """A real value in [low, high], sampled on a log scale when `log`."""

    low: float
    high: float
    log: bool = False

    def __post_init__(self) -> None:
        if not self.low < self.high or (self.log and self.low <= 0):
            raise ValueError(f"a range needs low < high (and low > 0 on a log scale), got [{self.low}, {self.high}]")

    def suggest(self, trial: Any, name: str) -> float:
        return trial.suggest_float(name, self.low, self.high, log=self.log)

    def contains(self, value: Any) -> bool:
        return isinstance(value, (int, float)) and not isinstance(value, bool) and self.low <= value <= self.high

    def text(self) -> str:
        return f"[{self.low:g}, {self.high:g}]" + (" (log)" if self.log else "")


@dataclass(frozen=True)
class Integer(Real):
    """A whole number in [low, high]."""

    low: int
    high: int

    def suggest(self, trial: Any, name: str) -> int:
        return trial.suggest_int(name, self.low, self.high, log=self.log)

    def contains(self, value: Any) -> bool:
        return isinstance(value, int) and super().contains(value)


Param = Union[Real, Integer]
SearchSpace = Mapping[str, Param]


def space_text(space: SearchSpace) -> str:
    return ", ".join(f"{name} in {param.text()}" for name, param in space.items())


def parse_range(text: str) -> Real:
    """'LOW:HIGH' or 'LOW:HIGH:log' as a range (`space_for` makes it an Integer for an int field)."""
    parts = text.split(":")
    if len(parts) not in (2, 3) or (len(parts) == 3 and parts[2] != "log"):
        raise BenchError(f"expected a range LOW:HIGH or LOW:HIGH:log, got {text!r}")
    try:
        return Real(float(parts[0]), float(parts[1]), log=len(parts) == 3)
    except ValueError as err:
        raise BenchError(f"range {text!r}: {err}") from None


def space_for(attack: str, given: Mapping[str, Real] | None = None) -> dict[str, Param]:
    """The space `attack` is tuned over: its class's declared space without the fields its registration fixes
    (a variant such as gradinversion-no-group is defined by them), with `given` ranges on top. A given field
    its Config lacks or that is not a number, or that the variant fixes, raises BenchError with one line."""
    from bench.attack import ATTACKS

    entry = ATTACKS.get(attack)
    fixed = entry.info.get("config", {})
    declared = getattr(entry.obj, "search_space", {})
    for name in declared:  # a plugin's space is checked like a given one
        field_kind(attack, entry.obj.Config, name)
    inert = _inert_fields(entry.obj, fixed)
    space = {k: v for k, v in declared.items() if k not in fixed and k not in inert}
    for name, param in (given or {}).items():
        kind = field_kind(attack, entry.obj.Config, name)
        if name in fixed:
            raise BenchError(f"search space of {attack!r}: {name} is fixed by the variant ({name}={fixed[name]!r})")
        if name in inert:
            raise BenchError(f"search space of {attack!r}: {name} has no effect with {inert[name]}")
        space[name] = _as_kind(attack, name, param, kind)
    return space


def _inert_fields(attack_cls: type, fixed: Mapping[str, Any]) -> dict[str, str]:
    """Fields of the class's space that act only under settings the variant (its fixed values over the
    Config's defaults) does not have: field -> the setting that makes it inert, e.g. 'mlco=False'."""
    inert = {}
    config = attack_cls.Config(**fixed)
    for name, needs in getattr(attack_cls, "search_space_acts_when", {}).items():
        wrong = [f"{k}={getattr(config, k)!r}" for k, v in needs.items() if getattr(config, k) != v]
        if wrong:
            inert[name] = ", ".join(wrong)
    return inert


def field_kind(attack: str, config_cls: type, name: str) -> str:
    """'int' or 'float', the type of Config field `name`; BenchError (one line) for a field the Config lacks
    or one that is not a number."""
    fields = {f.name: f for f in dataclasses.fields(config_cls) if f.init} if dataclasses.is_dataclass(config_cls) else {}
    if name not in fields:
        known = ", ".join(fields) or "none"
        raise BenchError(f"search space of {attack!r}: its Config has no field {name!r}; its fields: {known}")
    kind = fields[name].type if isinstance(fields[name].type, str) else getattr(fields[name].type, "__name__", "")
    if kind not in ("int", "float"):
        raise BenchError(f"search space of {attack!r}: {name} is a {kind} field; only int and float fields are tuned")
    return kind


def _as_kind(attack: str, name: str, param: Real, kind: str) -> Param:
    if kind == "float":
        return Real(param.low, param.high, param.log)
    if param.low != int(param.low) or param.high != int(param.high):
        raise BenchError(f"search space of {attack!r}: {name} is an int field; give whole bounds, got {param.text()}")
    return Integer(int(param.low), int(param.high), param.log)
