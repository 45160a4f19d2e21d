"""Case (everything the attacker may see) and Secret (the client's private batch), and their safe files.

A Case never references the Secret. On disk a Case is `case.json` + `case.safetensors`; the JSON holds the
SHA-256 of the tensor file, so a tampered file is refused, and nothing is ever unpickled.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import torch
from safetensors import SafetensorError
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save
from torch import nn

from bench.errors import BenchError, CaseFileError
from bench.files import make_partial_folder, remove_dead_leftovers, replace_folder
from bench.loss import LossSpec
from bench.models import Architecture, build_model
from bench.normalization import Normalization
from bench.threat import ThreatModel

CASE_SCHEMA = 1
BNMode = Literal["train", "eval"]


@dataclass(frozen=True)
class BatchNormStats:
    """Statistics a BN layer normalises with in train mode: mean and biased variance over (N, H, W)."""

    mean: torch.Tensor
    var: torch.Tensor


@dataclass
class Case:
    """The leaked update and everything the threat model lets the attacker know.

    `model_state` is the client's model before the leaked round (white-box weights and BN buffers);
    `gradients` maps parameter names to the shared update, in `named_parameters` order: the gradient of
    `loss` over the batch (FedSGD) or theta_0 - theta_n (FedAvg), as defended and averaged over the
    clients by `threat.update`. `batch_size` is one client's B; `num_images` all K*B behind the update.
    `classifier` names the last linear layer's weight and bias, `bn_layers` the BN modules (both can be
    read off the weights). `labels` is set only when the threat model says labels are known, `bn_stats`
    only for exact BN. `info` describes the scenario without revealing the batch.
    """

    architecture: Architecture
    model_state: dict[str, torch.Tensor]
    gradients: dict[str, torch.Tensor]
    threat: ThreatModel
    loss: LossSpec
    bn_mode: BNMode
    batch_size: int
    image_shape: tuple[int, int, int]
    normalization: Normalization
    classifier: tuple[str, str | None]
    bn_layers: tuple[str, ...]
    labels: torch.Tensor | None = None
    bn_stats: dict[str, BatchNormStats] | None = None
    info: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.threat.labels_known != (self.labels is not None):
            raise ValueError("labels must be present exactly when the threat model says labels are known")
        if (self.threat.bn_stats == "exact") != (self.bn_stats is not None):
            raise ValueError("bn_stats must be present exactly when the threat model gives exact BN statistics")

    @property
    def num_classes(self) -> int:
        return self.architecture.num_classes

    @property
    def num_images(self) -> int:
        """K*B: every client's images, all of which the shared update depends on."""
        return self.threat.update.clients * self.batch_size

    def sample_scale(self) -> float:
        """The factor turning a sum of per-sample gradients over all `num_images` into a mean of K FedSGD
        gradients (1/(K B) for the mean loss, 1/K for the sum)."""
        return self.loss.per_sample_scale(self.batch_size) / self.threat.update.clients

    def build_model(self, device: torch.device | str = "cpu") -> nn.Module:
        """A fresh copy of the client's model (weights and buffers), in the client's BN mode."""
        model = build_model(self.architecture)
        model.load_state_dict(self.model_state)
        model.train(self.bn_mode == "train")
        return model.to(device)

    def gradient_list(self, device: torch.device | str = "cpu") -> list[torch.Tensor]:
        return [g.to(device) for g in self.gradients.values()]

    def classifier_gradients(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Gradients of the last fully connected layer: dW (N x d) and db (N) or None."""
        weight, bias = self.classifier
        return self.gradients[weight], (self.gradients[bias] if bias else None)

    def has_bn_layers(self) -> bool:
        return bool(self.bn_layers)

    def bn_prior(self) -> dict[str, BatchNormStats] | None:
        """The BN statistics the threat model lets the attacker use as a prior, by layer name."""
        if self.threat.bn_stats == "exact":
            return self.bn_stats
        if self.threat.bn_stats == "running":
            return {
                name: BatchNormStats(self.model_state[f"{name}.running_mean"], self.model_state[f"{name}.running_var"])
                for name in self.bn_layers
            }
        return None

    def summary(self) -> str:
        n_params = sum(g.numel() for g in self.gradients.values())
        clients = f"{self.threat.update.clients} clients x " if self.threat.update.clients > 1 else ""
        lines = [
            f"model        {self.architecture.name} ({self.num_classes} classes, {n_params:,} parameters, BN {self.bn_mode} mode)",
            f"batch        {clients}{self.batch_size} x {'x'.join(map(str, self.image_shape))}",
            f"threat model {self.threat.short()}",
            f"loss         {self.loss.name} ({self.loss.reduction})",
        ]
        for key in ("dataset", "repetition", "label_source", "seed"):
            if key in self.info:
                lines.append(f"{key:<12} {self.info[key]}")
        return "\n".join(lines)


@dataclass(frozen=True)
class Secret:
    """The clients' private batches: what an attack tries to recover. Never handed to an attack.

    K clients' batches one after the other (client 0's B images first). `facts` are what only the client
    simulation knows about the update, for the record: the cosine of the shared update to the same update
    undefended, and the privacy budget its defense certifies.
    """

    images: torch.Tensor  # K*B x C x H x W, pixel space [0, 1]
    labels: torch.Tensor  # K*B, int64
    sources: tuple[str, ...] = ()
    facts: dict = field(default_factory=dict)

    @property
    def items(self) -> frozenset[int]:
        """The dataset items the clients' images were cut from (`sources` reads "dataset#item@crop_seed")."""
        return frozenset(int(source.split("#", 1)[1].split("@", 1)[0]) for source in self.sources)


# ---- files -------------------------------------------------------------------------------------------


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _write_pair(folder: Path, stem: str, meta: dict, tensors: dict[str, torch.Tensor]) -> None:
    blob = st_save({k: v.detach().cpu().contiguous() for k, v in tensors.items()})
    meta = {**meta, "tensors_sha256": _sha256(blob)}
    (folder / f"{stem}.safetensors").write_bytes(blob)
    (folder / f"{stem}.json").write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")


def _read_pair(folder: Path, stem: str) -> tuple[dict, dict[str, torch.Tensor]]:
    json_path, tensor_path = folder / f"{stem}.json", folder / f"{stem}.safetensors"
    for path in (json_path, tensor_path):
        if not path.is_file():
            raise CaseFileError(f"missing file {path}")
    try:
        meta = json.loads(json_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise CaseFileError(f"{json_path} is not valid JSON ({err})") from None
    if not isinstance(meta, dict):
        raise CaseFileError(f"{json_path} holds a JSON {type(meta).__name__}, not a case's description (an object)")
    if meta.get("schema") != CASE_SCHEMA:
        raise CaseFileError(f"{json_path} has schema {meta.get('schema')!r}, expected {CASE_SCHEMA}")
    blob = tensor_path.read_bytes()
    if _sha256(blob) != meta.get("tensors_sha256"):
        raise CaseFileError(f"{tensor_path} does not match the checksum in {json_path.name} (modified or corrupt)")
    try:
        tensors = st_load(blob)
    except (SafetensorError, ValueError, RuntimeError) as err:
        raise CaseFileError(f"{tensor_path} is not a safetensors file ({err})") from None
    return meta, tensors


CASE_FILES = ("case.json", "case.safetensors", "secret.json", "secret.safetensors")


def check_case_folder(folder: str | Path) -> None:
    """Refuse a place where writing a case would destroy something else: a file, or a folder holding
    anything but a case's files. A new folder, an empty one, or an earlier case (replaced whole) is fine."""
    folder = Path(folder)
    if not folder.exists() and not folder.is_symlink():
        return
    if Path.cwd().is_relative_to(folder.resolve()):
        raise BenchError(f"{folder} is the working folder (or holds it); give --out a folder inside it")
    if not folder.is_dir():
        raise BenchError(f"{folder} is a file, not a folder; give --out a new folder or an existing case")
    others = sorted(p.name for p in folder.iterdir() if p.name not in CASE_FILES)
    if others:
        shown = ", ".join(others[:3]) + (f" and {len(others) - 3} more" if len(others) > 3 else "")
        raise BenchError(f"{folder} holds files that are not a case's ({shown}); give --out a new or empty folder")


def _atomic_folder(target: Path, fill) -> Path:
    """Write a folder's files into a temporary sibling, then put it in place of `target` atomically."""
    target = Path(os.path.abspath(target))  # "cases/." names "cases"
    check_case_folder(target)
    remove_dead_leftovers(target.parent)
    tmp = make_partial_folder(target)
    try:
        fill(tmp)
        check_case_folder(target)  # still only a case there (a user may have added a file meanwhile)
        replace_folder(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


def save_case(case: Case, folder: str | Path, secret: Secret | None = None) -> Path:
    """Write `case` (and optionally its secret, in separate files) to `folder`, atomically."""

    def fill(tmp: Path) -> None:
        tensors = {f"model.{k}": v for k, v in case.model_state.items()}
        tensors.update({f"grad.{k}": v for k, v in case.gradients.items()})
        if case.labels is not None:
            tensors["labels"] = case.labels
        for name, stats in (case.bn_stats or {}).items():
            tensors[f"bn.{name}.mean"], tensors[f"bn.{name}.var"] = stats.mean, stats.var
        meta = {
            "schema": CASE_SCHEMA,
            "architecture": case.architecture.to_dict(),
            "threat": case.threat.to_dict(),
            "loss": case.loss.to_dict(),
            "bn_mode": case.bn_mode,
            "batch_size": case.batch_size,
            "image_shape": list(case.image_shape),
            "normalization": case.normalization.to_dict(),
            "gradient_order": list(case.gradients),
            "model_state_order": list(case.model_state),
            "bn_stats_order": list(case.bn_stats or {}),
            "classifier": list(case.classifier),
            "bn_layers": list(case.bn_layers),
            "info": case.info,
        }
        _write_pair(tmp, "case", meta, tensors)
        if secret is not None:
            _write_pair(
                tmp,
                "secret",
                {"schema": CASE_SCHEMA, "sources": list(secret.sources), "facts": secret.facts},
                {"images": secret.images, "labels": secret.labels},
            )

    return _atomic_folder(Path(folder), fill)


def load_case(folder: str | Path) -> Case:
    meta, tensors = _read_pair(Path(folder), "case")
    try:
        bn_stats = {n: BatchNormStats(tensors[f"bn.{n}.mean"], tensors[f"bn.{n}.var"]) for n in meta["bn_stats_order"]}
        return Case(
            architecture=Architecture.from_dict(meta["architecture"]),
            model_state={k: tensors[f"model.{k}"] for k in meta["model_state_order"]},
            gradients={k: tensors[f"grad.{k}"] for k in meta["gradient_order"]},
            threat=ThreatModel.from_dict(meta["threat"]),
            loss=LossSpec(**meta["loss"]),
            bn_mode=meta["bn_mode"],
            batch_size=int(meta["batch_size"]),
            image_shape=tuple(meta["image_shape"]),
            normalization=Normalization.from_dict(meta["normalization"]),
            classifier=tuple(meta["classifier"]),
            bn_layers=tuple(meta["bn_layers"]),
            labels=tensors.get("labels"),
            bn_stats=bn_stats if meta["threat"]["bn_stats"] == "exact" else None,
            info=meta["info"],
        )
    except (KeyError, TypeError, ValueError, AttributeError, BenchError) as err:
        raise CaseFileError(f"{folder}: case file is inconsistent ({type(err).__name__}: {err})") from None


def load_secret(folder: str | Path) -> Secret:
    meta, tensors = _read_pair(Path(folder), "secret")
    try:
        return Secret(tensors["images"], tensors["labels"], tuple(meta["sources"]), meta.get("facts", {}))
    except KeyError as err:
        raise CaseFileError(f"{folder}: secret file lacks {err}") from None
