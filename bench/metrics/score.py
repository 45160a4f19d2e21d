"""score(Reconstruction, Secret) -> Scores: the one definition of reconstruction quality.

Images are compared in [0, 1] pixel space. Reconstructions are paired with true images one-to-one by
optimal assignment (the headline) and by best match (beside it); see bench.metrics.pairing. SSIM and
LPIPS are computed only for the pairs used, so batches of 256 images of 224 px stay practical on CPU.
Means are over true images that have a partner (all of them unless the attack returned fewer images);
`recognisable_fraction` divides by the true batch size, so a missing image counts as not recognisable.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field

import torch

from bench.attack import Reconstruction
from bench.case import Secret
from bench.errors import BenchError
from bench.metrics.config import MetricConfig
from bench.metrics.image import PSNR_CAP_DB, mse, psnr_from_mse
from bench.metrics.labels import label_scores
from bench.metrics.lpips_offline import Lpips, open_lpips
from bench.metrics.pairing import best_match, label_penalised, one_to_one, pairwise_mse
from bench.metrics.ssim import ssim

SCORES_SCHEMA = 1
IMAGE_METRICS = ("mse", "psnr", "ssim", "lpips")


@dataclass
class Scores:
    """Summary values (keys registered in METRICS), per-image values in ground-truth order, the pairing.

    per_image holds, for every true image: "assignment" (its one-to-one reconstruction index or None),
    "mse"/"psnr"/"ssim"/"lpips" of that pair, "best_match" and the same metrics suffixed "_best_match",
    "label" (true) and "label_assigned" (the assigned reconstruction's label, None without labels).
    indices["psnr_worst"] / ["psnr_best"]: the true image index of the worst / best one-to-one PSNR.
    """

    summary: dict[str, float | None]
    per_image: dict[str, list]
    indices: dict[str, int | None]
    config: MetricConfig
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        """JSON-serialisable (finite numbers or None), enough to recompute any table later."""
        data = {
            "schema": SCORES_SCHEMA,
            "psnr_cap_db": PSNR_CAP_DB,
            "summary": dict(self.summary),
            "per_image": {k: list(v) for k, v in self.per_image.items()},
            "indices": dict(self.indices),
            "config": self.config.to_dict(),
            "notes": list(self.notes),
        }
        json.dumps(data, allow_nan=False)  # fail loudly here rather than write a non-standard JSON record
        return data

    @classmethod
    def from_dict(cls, data: dict) -> "Scores":
        config = MetricConfig.from_dict(data["config"])
        return cls(data["summary"], data["per_image"], data["indices"], config, data["notes"])


def _check(reconstruction: Reconstruction, secret: Secret) -> None:
    rec, true = reconstruction.images, secret.images
    if rec.dim() != 4 or rec.shape[1:] != true.shape[1:]:
        raise BenchError(f"reconstructed images have shape {tuple(rec.shape)}, true images {tuple(true.shape)}")
    if rec.shape[0] == 0:
        raise BenchError("the reconstruction holds no images")
    labels = reconstruction.labels
    if labels is not None and labels.numel() != rec.shape[0]:
        raise BenchError(f"the reconstruction has {rec.shape[0]} images but {labels.numel()} labels")
    if not torch.isfinite(rec).all():
        raise BenchError("the reconstruction holds NaN or infinite pixels (the attack diverged)")


def _pair_values(
    true: torch.Tensor, rec: torch.Tensor, pairs: list[tuple[int, int]], lp: Lpips | None, chunk: int
) -> dict[tuple[int, int], dict[str, float | None]]:
    """MSE, PSNR, SSIM and LPIPS of each (true index, rec index) pair, in chunks to bound memory."""
    values: dict[tuple[int, int], dict[str, float | None]] = {}
    for s in range(0, len(pairs), chunk):
        part = pairs[s : s + chunk]
        a = true[torch.tensor([i for i, _ in part])]
        b = rec[torch.tensor([j for _, j in part])]
        m = mse(a, b)
        cols = {"mse": m, "psnr": psnr_from_mse(m), "ssim": ssim(a, b, chunk=chunk)}
        if lp is not None:
            cols["lpips"] = lp.pairs(a, b, chunk=chunk)
        for k, pair in enumerate(part):
            values[pair] = {name: (float(cols[name][k]) if name in cols else None) for name in IMAGE_METRICS}
    return values


def _mean(xs: list[float | None]) -> float | None:
    present = [x for x in xs if x is not None]
    return math.fsum(present) / len(present) if present else None


def score(reconstruction: Reconstruction, secret: Secret, config: MetricConfig | None = None) -> Scores:
    """Score a reconstruction against the client's private batch.

    Example:
        >>> scores = score(attack.reconstruct(case), secret)
        >>> scores.summary["psnr"], scores.summary["psnr_best_match"], scores.summary["label_acc"]
    """
    config = config or MetricConfig()
    _check(reconstruction, secret)
    device = torch.device(config.device) if config.device else secret.images.device
    true = secret.images.detach().to(device).float()
    rec = reconstruction.images.to(device).float()
    notes: list[str] = []

    lp = None
    if config.lpips:
        lp, reason = open_lpips(config.lpips_net, config.lpips_weights, tuple(true.shape), device)
        if reason:
            notes.append(reason)
    if config.pairing == "lpips" and lp is None:
        raise BenchError(f"pairing by LPIPS is impossible here ({notes[-1]})")

    cost = lp.pairwise(true, rec, config.chunk) if config.pairing == "lpips" else pairwise_mse(true, rec).cpu()
    by_label = config.pair_by_label and reconstruction.labels is not None
    if config.pair_by_label and not by_label:
        notes.append("pairing by label requested, but the reconstruction has no labels: paired by image only")
    if by_label:
        cost = label_penalised(cost, secret.labels, reconstruction.labels)
    assigned, best = one_to_one(cost), best_match(cost)
    pairs = sorted({(i, j) for i, j in enumerate(assigned) if j is not None} | set(enumerate(best)))
    values = _pair_values(true, rec, pairs, lp, config.chunk)

    per_image: dict[str, list] = {"assignment": assigned}
    for name in IMAGE_METRICS:
        per_image[name] = [values[(i, j)][name] if j is not None else None for i, j in enumerate(assigned)]
    per_image["best_match"] = best
    for name in IMAGE_METRICS:
        per_image[f"{name}_best_match"] = [values[(i, j)][name] for i, j in enumerate(best)]
    per_image["label"] = secret.labels.flatten().tolist()
    rec_labels = reconstruction.labels.flatten().tolist() if reconstruction.labels is not None else None
    per_image["label_assigned"] = [None if rec_labels is None or j is None else rec_labels[j] for j in assigned]

    summary: dict[str, float | None] = {name: _mean(per_image[name]) for name in IMAGE_METRICS}
    summary.update({f"{name}_best_match": _mean(per_image[f"{name}_best_match"]) for name in IMAGE_METRICS})
    psnrs = [(p, i) for i, p in enumerate(per_image["psnr"]) if p is not None]
    worst, best_psnr = min(psnrs), max(psnrs, key=lambda t: (t[0], -t[1]))
    summary["psnr_worst"], summary["psnr_best"] = worst[0], best_psnr[0]
    summary["recognisable_fraction"] = sum(p > config.recognisable_psnr for p, _ in psnrs) / true.shape[0]
    summary.update(label_scores(secret.labels, reconstruction.labels).to_dict())
    indices = {"psnr_worst": worst[1], "psnr_best": best_psnr[1]}
    return Scores(summary, per_image, indices, config, notes)
