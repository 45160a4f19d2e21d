"""What an audit is asked: the user's model, data and deployment, the batch sizes, the cases, the time allowed.

Every flag is checked here, before anything is loaded; a mistake is one line (BenchError).

Example:
    >>> options = AuditOptions(Path("my_model.py"), "Net", Path("my_images"), Path("audit"), batch_sizes=(1, 8))
    >>> options.scenario(batch_size=8, defense="none", seed=0, repetition=0.25, bn_stats="running")
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.attack import ATTACKS
from bench.data.folder import NAME as FOLDER, normalization_text, parse_normalization
from bench.data.transforms import IMAGENET
from bench.defenses import parse_defense
from bench.errors import BenchError
from bench.floors import FLOORS
from bench.models.user_file import PREFIX, split_name
from bench.scenario import Scenario
from bench.threat import ThreatModel
from bench.update import ClientUpdate

# The attacks an audit tries by default: every attack of the benchmark but the ablations and references;
# those whose requirements the model or the threat model do not meet are left out with the reason.
DEFAULT_ATTACKS = ("dlg", "idlg", "inverting-gradients", "gradinversion", "e2egi-no-mlco", "e2egi")
DEFAULT_BATCH_SIZES = (1, 8, 32)
DEFAULT_CASES = 5
DEFAULT_MINUTES = 20.0
NAMED_NORMALIZATIONS = {"imagenet": IMAGENET}
MODEL_SEED = 0  # the user's model is one model: its initial weights (when no weights are given) do not vary


@dataclass(frozen=True)
class AuditOptions:
    """One audit. `cases` client batches are drawn per batch size (seeds 0..cases-1); `defenses` always
    starts with "none", the deployment without a defense, which every defense is compared with."""

    model_file: Path
    class_name: str
    data: Path
    out: Path
    model_args: dict[str, Any] = field(default_factory=dict)
    weights: Path | None = None
    normalization: str = "data"
    image_size: int = 32
    batch_sizes: tuple[int, ...] = DEFAULT_BATCH_SIZES
    cases: int = DEFAULT_CASES
    local_steps: int = 1
    local_batch_size: int | None = None
    local_lr: float = 1e-4
    defenses: tuple[str, ...] = ("none",)
    labels_known: bool = False
    bn_stats: str = "auto"
    bn_mode: str = "train"
    attacks: tuple[str, ...] = DEFAULT_ATTACKS
    max_minutes: float = DEFAULT_MINUTES
    device: str = "cpu"

    @property
    def model_name(self) -> str:
        """The registry name of the user's class (bench.models.user_file), with the file's absolute path, so
        a Case rebuilds it from any working folder."""
        return f"{PREFIX}:{self.model_file.resolve()}:{self.class_name}"

    @property
    def model_options(self) -> dict[str, Any]:
        """The registry options of the user's class: its keyword arguments under `args` (bench.models.user_file)."""
        return {"args": dict(self.model_args)} if self.model_args else {}

    @property
    def dataset_name(self) -> str:
        """`folder` (the data's own normalisation) or `folder:<mean>/<std>` (bench.data.folder)."""
        if self.normalization == "data":
            return FOLDER
        given = NAMED_NORMALIZATIONS.get(self.normalization) or parse_normalization(self.normalization)
        return f"{FOLDER}:{normalization_text(given)}"

    @property
    def seeds(self) -> tuple[int, ...]:
        return tuple(range(self.cases))

    def update(self, defense: str) -> ClientUpdate:
        return ClientUpdate(self.local_steps, self.local_batch_size, self.local_lr, 1, parse_defense(defense))

    def scenario(self, batch_size: int, defense: str, seed: int, repetition: float, bn_stats: str) -> Scenario:
        """The client of one case: a batch of `batch_size` of the user's images, the user's model and update."""
        return Scenario(
            dataset=self.dataset_name,
            data_path=str(self.data.resolve()),
            image_size=self.image_size,
            batch_size=batch_size,
            repetition=repetition,
            model=self.model_name,
            model_options=self.model_options,
            weights=None if self.weights is None else str(self.weights.resolve()),
            threat=ThreatModel(labels_known=self.labels_known, bn_stats=bn_stats, update=self.update(defense)),
            bn_mode=self.bn_mode,
            seed=seed,
            model_seed=MODEL_SEED,
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": f"{self.model_file}:{self.class_name}", "model_args": self.model_args,
            "weights": None if self.weights is None else str(self.weights), "data": str(self.data),
            "normalization": self.normalization, "image_size": self.image_size, "batch_sizes": list(self.batch_sizes),
            "cases": self.cases, "local_steps": self.local_steps, "local_batch_size": self.local_batch_size,
            "local_lr": self.local_lr, "defenses": list(self.defenses), "labels_known": self.labels_known,
            "bn_stats": self.bn_stats, "bn_mode": self.bn_mode, "attacks": list(self.attacks),
            "max_minutes": self.max_minutes, "device": self.device, "out": str(self.out),
        }  # fmt: skip

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> "AuditOptions":
        """The options of `bench audit`'s flags (bench.cli), each checked."""
        model_file, class_name = split_name(args.model, "path/to/file.py:ClassName", f"--model {args.model}")
        if args.normalization != "data" and args.normalization not in NAMED_NORMALIZATIONS:
            parse_normalization(args.normalization)
        return cls(
            model_file=model_file,
            class_name=class_name,
            data=Path(args.data).expanduser(),
            out=_out_folder(args.out),
            model_args=_model_args(args.model_args),
            weights=None if args.weights is None else Path(args.weights).expanduser(),
            normalization=args.normalization,
            image_size=args.image_size,
            batch_sizes=_batch_sizes(args.batch_sizes),
            cases=args.cases,
            local_steps=args.local_steps,
            local_batch_size=args.local_batch_size,
            local_lr=args.local_lr,
            defenses=_defenses(args.defenses),
            labels_known=args.labels == "known",
            bn_stats=args.bn_stats,
            bn_mode=args.bn_mode,
            attacks=_attacks(args.attacks),
            max_minutes=args.max_minutes,
            device=args.device,
        )


def _out_folder(text: str) -> Path:
    if not text.strip():
        raise BenchError("--out needs a folder name, got an empty one")
    return Path(text).expanduser()


def _model_args(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        raise BenchError(f"--model-args is not valid JSON ({err.msg} at character {err.pos}): {text}") from None
    if not isinstance(value, dict):
        raise BenchError(f"--model-args must be a JSON object of keyword arguments, e.g. '{{\"num_classes\": 10}}'; got {text}")
    return value


def _batch_sizes(values: list) -> tuple[int, ...]:
    wrong = [v for v in values if isinstance(v, bool) or not isinstance(v, int) or v < 1]
    if wrong or not values:
        raise BenchError(f"--batch-sizes takes integers of at least 1, e.g. 1,8,32; got {','.join(map(str, values)) or 'none'}")
    return tuple(sorted(set(values)))


def _defenses(texts: list[str]) -> tuple[str, ...]:
    """"none" first, then each defense given, in its canonical syntax ("prune(ratio=0.9)"), without repeats."""
    return tuple(dict.fromkeys(parse_defense(text).spec() for text in ["none", *texts]))


def _attacks(names: list[str] | None) -> tuple[str, ...]:
    if names is None:
        return DEFAULT_ATTACKS
    floors = [n for n in names if n in FLOORS]
    if floors:
        raise BenchError(f"--attacks {', '.join(floors)}: the prior floors are scored on every case; name attacks only")
    return tuple(n for n in ATTACKS.select(names) if n not in FLOORS)  # 'all' and globs: the attacks
