"""The attack contract: ``reconstruct(case, budget, seed) -> Reconstruction``.

An attack sees a Case, never the Secret. It declares what it requires of the threat model; the runner
records an incompatible pair as skipped instead of running it.

Example:
    >>> attack = create_attack("noise")
    >>> rec = attack.reconstruct(case, budget=1, seed=0)
"""

from __future__ import annotations

import dataclasses
import difflib
import json
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar, Mapping

import torch

from bench.case import Case
from bench.errors import BenchError
from bench.registry import Registry
from bench.threat import Requirements
from bench.typed import FieldError, checked_values

Progress = Callable[[int, float], None]  # (iteration, current loss) after each iteration; see `report`


def report(
    progress: Progress | None, iteration: int, loss: float, current: Callable[[], "Reconstruction"] | None = None
) -> None:
    """Report an iteration to `progress`. An attack that can also passes `current`, which returns its best
    reconstruction so far: a progress with an `offer(iteration, loss, current)` method (the runner's) calls
    it at its checkpoints and scores the images for the run's trace (bench.trace); nothing comes back."""
    if progress is None:
        return
    progress(iteration, loss)
    offer = getattr(progress, "offer", None)
    if offer is not None and current is not None:
        offer(iteration, loss, current)


@dataclass
class Reconstruction:
    """What an attack returns: images in [0, 1] pixel space (B x C x H x W), labels or None."""

    images: torch.Tensor
    labels: torch.Tensor | None
    loss_trace: list[float] = field(default_factory=list)
    iterations: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.images.dim() != 4:
            raise ValueError(f"reconstructed images must be B x C x H x W, got shape {tuple(self.images.shape)}")
        self.images = self.images.detach().float().cpu().clamp(0, 1)
        if self.labels is not None:
            self.labels = self.labels.detach().long().cpu()


class Attack(ABC):
    """Base class: a config dataclass (`Config`, defaults = the paper's values) and `reconstruct`.

    `device` is where the attack computes; `collective` says which ranks share the dummy batch
    (a single process by default; see bench.distributed). The runner sets both.
    """

    Config: ClassVar[type] = type(None)
    requires: ClassVar[Requirements] = Requirements()
    # True when every matrix product the attack runs goes through the engine's counted evaluations
    # (bench.compute); otherwise the runner counts the whole run under FlopCounterMode (exact, slower)
    flops_metered: ClassVar[bool] = False
    # the hyperparameters `bench tune` searches: Config field -> range (bench.search_space), the paper's
    # values inside each range; fields a registered variant fixes are left out of that variant's search
    search_space: ClassVar[Mapping[str, Any]] = {}
    # fields of the search space that act only under some settings: field -> {Config field: value it needs};
    # a variant without those values does not search the field (it would tune nothing)
    search_space_acts_when: ClassVar[Mapping[str, Mapping[str, Any]]] = {}
    name: str = ""

    def __init__(self, config: Any = None, device: torch.device | str = "cpu", collective: Any = None) -> None:
        self.config = config if config is not None else self.Config()
        self.device = torch.device(device)
        self.collective = collective

    def incompatibility(self, case: Case) -> str | None:
        """Why this attack may not run on `case` (its threat model, model or batch), or None."""
        return self.requires.incompatibility(case.threat, case.has_bn_layers(), case.batch_size)

    def check_compatible(self, case: Case) -> None:
        """Refuse a case the attack's declared requirements exclude (the runner skips such pairs instead)."""
        reason = self.incompatibility(case)
        if reason:
            raise BenchError(f"{self.name or type(self).__name__}: {reason}")

    def reconstruct(
        self, case: Case, budget: int | None = None, seed: int = 0, progress: Progress | None = None
    ) -> Reconstruction:
        """Reconstruct the batch behind `case.gradients`; `budget` caps iterations (None: paper budget).

        Every attack refuses here a case its requirements exclude.
        """
        self.check_compatible(case)
        return self.invert(case, budget, seed, progress)

    @abstractmethod
    def invert(self, case: Case, budget: int | None, seed: int, progress: Progress | None) -> Reconstruction:
        """The attack itself, on a case already checked against `requires`."""


ATTACKS: Registry[type[Attack]] = Registry("attack")


def register_attack(name: str, description: str, **config_overrides: Any) -> Callable[[type[Attack]], type[Attack]]:
    """Register an attack class; variants of one class register with different config overrides."""

    def add(cls: type[Attack]) -> type[Attack]:
        ATTACKS.add(name, cls, description, config=config_overrides)
        return cls

    return add


def create_attack(name: str, device: torch.device | str = "cpu", collective: Any = None, **config: Any) -> Attack:
    """Instantiate a registered attack; None values are dropped so CLI defaults never override the paper's."""
    options = {k: v for k, v in config.items() if v is not None}
    return attack_from_config(name, attack_config(name, options), device, collective)


def attack_from_config(name: str, config: Any, device: torch.device | str = "cpu", collective: Any = None) -> Attack:
    """Instantiate registered attack `name` with a Config already resolved (`attack_config`)."""
    attack = ATTACKS.get(name).obj(config, device=device, collective=collective)
    attack.name = name
    return attack


def attack_config(name: str, options: Mapping[str, Any] | None = None) -> Any:
    """The Config of registered attack `name`: its defaults, the variant's registered settings, then `options`.

    Each value is checked against its field's type (bench.typed; a list stands for a tuple, an int for a
    float); an unknown field or a value of the wrong type raises BenchError with one line naming it.

    Example:
        >>> attack_config("dlg", {"lr": 0.5}).lr
        0.5
    """
    entry = ATTACKS.get(name)
    cls = entry.obj.Config
    values = {**entry.info.get("config", {}), **(options or {})}
    if not dataclasses.is_dataclass(cls):
        if values:
            raise BenchError(f"attack {name!r} has no options (its Config is not a dataclass)")
        return None
    known = [f.name for f in dataclasses.fields(cls) if f.init]
    for option in values:
        if option not in known:
            close = difflib.get_close_matches(option, known, n=3, cutoff=0.5)
            hint = f"did you mean {', '.join(close)}?" if close else f"its options: {', '.join(known) or 'none'}"
            raise BenchError(f"attack {name!r} has no option {option!r}; {hint}")
    try:
        config = cls(**{k: _tuples(v) for k, v in values.items()})
        return dataclasses.replace(config, **checked_values(config))
    except FieldError as err:
        raise BenchError(f"attack option {name}.{err}") from None
    except (TypeError, ValueError) as err:  # the Config's own checks
        raise BenchError(f"attack options of {name!r}: {err}") from None


def config_values(config: Any) -> dict[str, Any]:
    """A Config as plain JSON values (tuples as lists), the form records keep and run ids hash."""
    if not dataclasses.is_dataclass(config):
        return {}
    return json.loads(json.dumps(dataclasses.asdict(config), sort_keys=True, default=repr))


def _tuples(value: Any) -> Any:
    """Lists (as YAML and JSON give them) as tuples, the form a frozen Config holds."""
    return tuple(_tuples(v) for v in value) if isinstance(value, list) else value
