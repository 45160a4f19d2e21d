"""What the attacker is allowed to know (ThreatModel) and what an attack needs (Requirements)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from bench.errors import BenchError
from bench.update import ClientUpdate

BNStats = Literal["none", "running", "exact"]
BN_LEVELS: tuple[str, ...] = ("none", "running", "exact")


@dataclass(frozen=True)
class ThreatModel:
    """The attacker's knowledge besides the white-box weights and the leaked gradient.

    labels_known: the server is given the batch's labels (Inverting Gradients' honest-server setting).
    bn_stats: BN statistics the attacker may use as a prior: none; the model's running statistics
        (GradInversion's BN_approx); or the batch's own statistics uploaded by the client (BN_exact).
    batch_size_known: the number of images in the batch.
    update: how every client computes what it shares (local training, clients, defense; bench.update):
        configured here, so the attacker knows it all but the defense's random draws. With K clients the
        exact BN statistics are the mean over the clients of each client's own batch statistics.
    """

    labels_known: bool = False
    bn_stats: BNStats = "exact"
    batch_size_known: bool = True
    update: ClientUpdate = field(default_factory=ClientUpdate)

    def __post_init__(self) -> None:
        if self.bn_stats not in BN_LEVELS:
            raise BenchError(f"bn_stats must be one of {', '.join(BN_LEVELS)}, got {self.bn_stats!r}")

    def to_dict(self) -> dict:
        """Canonical form; a default update is left out, so older run ids and case files stay valid."""
        data = {"labels_known": self.labels_known, "bn_stats": self.bn_stats, "batch_size_known": self.batch_size_known}
        update = self.update.to_dict()
        return {**data, "update": update} if update else data

    @classmethod
    def from_dict(cls, data: dict) -> "ThreatModel":
        data = dict(data)
        data["update"] = ClientUpdate.from_dict(data.get("update", {}))
        return cls(**data)

    def short(self) -> str:
        labels = "labels known" if self.labels_known else "labels unknown"
        update = "" if self.update == ClientUpdate() else f", {self.update.short()}"
        return f"{labels}, BN {self.bn_stats}{update}"


@dataclass(frozen=True)
class Requirements:
    """What an attack needs of the threat model and the model.

    labels_known: the attack cannot recover labels itself.
    bn_stats: the BN-statistics levels the attack can run under ("running" means it needs at least
        the running statistics; "exact" needs the uploaded batch statistics).
    needs_bn_layers: the attack's prior is defined on BN layers, so a model without them is skipped.
    max_batch_size: the largest batch the method is defined for (iDLG: 1), None for any.
    updates: the local training the attack can match ("fedsgd": a gradient; "fedavg": a weight difference).
    aggregated: the attack reconstructs the K clients' images behind a mean update (K > 1).
    """

    labels_known: bool = False
    bn_stats: tuple[str, ...] = BN_LEVELS
    batch_size_known: bool = True
    needs_bn_layers: bool = False
    max_batch_size: int | None = None
    updates: tuple[str, ...] = ("fedsgd",)
    aggregated: bool = False

    def incompatibility(self, threat: ThreatModel, model_has_bn: bool, batch_size: int = 1) -> str | None:
        """The reason this attack may not run under `threat`, or None when it may."""
        if self.labels_known and not threat.labels_known:
            return "attack requires known labels; threat model has labels unknown"
        if threat.bn_stats not in self.bn_stats:
            return f"attack requires BN statistics {'/'.join(self.bn_stats)}; threat model gives {threat.bn_stats}"
        if self.batch_size_known and not threat.batch_size_known:
            return "attack requires the batch size; threat model hides it"
        if self.needs_bn_layers and not model_has_bn:
            return "attack needs BN layers; the model has none"
        if self.max_batch_size is not None and batch_size > self.max_batch_size:
            return f"attack is defined for batches of at most {self.max_batch_size}; this batch has {batch_size}"
        if threat.update.kind not in self.updates:
            return f"attack matches {'/'.join(self.updates)} updates; the client shares a {threat.update.kind} update"
        if threat.update.clients > 1 and not self.aggregated:
            return f"attack reconstructs one client's batch; the update is the mean of {threat.update.clients} clients"
        return None

    def short(self) -> str:
        parts = ["labels known" if self.labels_known else "labels any"]
        parts.append("BN " + "/".join(self.bn_stats) if self.bn_stats != BN_LEVELS else "BN any")
        if self.needs_bn_layers:
            parts.append("BN layers")
        if self.max_batch_size is not None:
            parts.append(f"B <= {self.max_batch_size}")
        parts.append("/".join("FedSGD" if u == "fedsgd" else "FedAvg" for u in self.updates))
        if self.aggregated:
            parts.append("K clients")
        return ", ".join(parts)
