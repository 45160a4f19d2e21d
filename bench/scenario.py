"""Scenario: the configuration of one simulated federated client and its threat model."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from bench.errors import BenchError
from bench.threat import ThreatModel


@dataclass(frozen=True)
class Scenario:
    """Everything that determines a Case and its Secret.

    model_seed None means the model's initial weights are drawn from `seed` as well.
    train_steps > 0 trains the model here (seeded SGD on the dataset) before the leaked round.
    client_memory "low" computes the client's FedSGD gradient with bounded memory, exactly (bench.client_memory).
    How clients train, how many are averaged and their defense: `threat.update` (bench.update), public.
    """

    dataset: str = "embedded"
    data_path: str | None = None
    image_size: int = 32
    batch_size: int = 4
    repetition: float = 0.0
    label_source: Literal["dataset", "model"] = "dataset"
    model: str = "convnet"
    num_classes: int | None = None
    model_options: dict[str, Any] = field(default_factory=dict)
    weights: str | None = None
    train_steps: int = 0
    threat: ThreatModel = field(default_factory=ThreatModel)
    bn_mode: Literal["train", "eval"] = "train"
    loss_reduction: Literal["mean", "sum"] = "mean"
    client_memory: Literal["full", "low"] = "full"
    seed: int = 0
    model_seed: int | None = None

    def __post_init__(self) -> None:
        refusal = self.threat.update.refusal(self.batch_size, self.bn_mode)
        if refusal:
            raise BenchError(refusal)

    def to_dict(self) -> dict:
        """Canonical form (the run id hashes it): the threat model's own canonical form inside."""
        return {**asdict(self), "threat": self.threat.to_dict()}

    @classmethod
    def from_dict(cls, data: dict) -> "Scenario":
        data = dict(data)
        if isinstance(data.get("threat"), dict):
            data["threat"] = ThreatModel.from_dict(data["threat"])
        return cls(**data)

    def key(self) -> str:
        """Stable hash of the canonical configuration."""
        blob = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()[:16]
