"""Records: one JSON file per run, written atomically, carrying everything needed to recompute a table."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from bench.errors import CaseFileError
from bench.files import write_atomic

RECORD_SCHEMA = 1
Status = Literal["ok", "failed", "skipped"]


def canonical_json(data: Any) -> str:
    return json.dumps(data, sort_keys=True, separators=(",", ":"))


def run_id(config: dict) -> str:
    """The hash of a run's canonical configuration: the same cell always gets the same id."""
    return hashlib.sha256(canonical_json(config).encode()).hexdigest()[:16]


@dataclass
class Record:
    run_id: str
    config: dict
    status: Status
    metrics: dict = field(default_factory=dict)
    per_image: dict = field(default_factory=dict)
    batch: dict = field(default_factory=dict)
    cost: dict = field(default_factory=dict)
    environment: dict = field(default_factory=dict)
    error: str | None = None
    traceback: str | None = None  # the failure's full traceback (failed runs; absent in older records)
    update: dict = field(default_factory=dict)  # the shared update's facts (bench.client); absent in older records
    trace: list = field(default_factory=list)  # quality against compute (bench.trace); absent in older records
    tuning: dict | None = None  # where the attack options came from (bench.tune): study, trials, best value, options
    schema: int = RECORD_SCHEMA

    def to_dict(self) -> dict:
        data = asdict(self)
        if not data["trace"]:
            del data["trace"]  # the label track and runs that did not run have none
        if data["tuning"] is None:
            del data["tuning"]  # runs with the attack's own settings
        return data

    @classmethod
    def from_dict(cls, data: dict) -> "Record":
        return cls(**data)


def _finite(value: Any) -> Any:
    """JSON has no inf/NaN: such values become null (metrics cap PSNR before this point)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def save_record(record: Record, folder: Path) -> Path:
    path = Path(folder) / f"{record.run_id}.json"
    write_atomic(path, json.dumps(_finite(record.to_dict()), indent=2, sort_keys=True) + "\n")
    return path


REQUIRED = ("run_id", "config", "status")
STATUSES = ("ok", "failed", "skipped")


def record_problem(data: Any) -> str | None:
    """Why `data` (parsed JSON) is not a record of this schema, or None when it is one."""
    if not isinstance(data, dict):
        return f"holds a JSON {type(data).__name__}, not an object"
    if data.get("schema") != RECORD_SCHEMA:
        return f"has schema {data.get('schema')!r}, expected {RECORD_SCHEMA}"
    missing = [k for k in REQUIRED if k not in data]
    unknown = sorted(set(data) - {f.name for f in dataclasses.fields(Record)})
    if missing or unknown:
        return "; ".join(filter(None, [missing and f"lacks {', '.join(missing)}", unknown and f"has unknown key(s) {', '.join(unknown)}"]))
    if not isinstance(data["config"], dict) or not isinstance(data["config"].get("scenario"), dict):
        return "has no scenario in its config"
    if data["status"] not in STATUSES:
        return f"has status {data['status']!r}, not one of {', '.join(STATUSES)}"
    metrics = data.get("metrics", {})
    if not isinstance(metrics, dict):
        return f"holds metrics as a JSON {type(metrics).__name__}, not an object"
    wrong = sorted(k for k, v in metrics.items() if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float))))
    if wrong:
        return "has metric(s) that are not numbers: " + ", ".join(f"{k}={metrics[k]!r}" for k in wrong)
    return None


def load_record(path: Path) -> Record:
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as err:
        raise CaseFileError(f"cannot read record {path}: {err}") from None
    problem = record_problem(data)
    if problem:
        raise CaseFileError(f"record {path} {problem}")
    return Record.from_dict(data)


def load_records(folder: Path) -> list[Record]:
    """Every record in `folder` (not recursive), sorted by run id."""
    return sorted((load_record(p) for p in Path(folder).glob("*.json")), key=lambda r: r.run_id)
