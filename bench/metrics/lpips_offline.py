"""LPIPS (Zhang et al. 2018, the `lpips` package) without any download.

The package ships its calibrated linear layers; the backbone's ImageNet weights are torchvision's. We
build the backbone with random initialisation (nothing fetched) and load both state dicts ourselves with
`torch.load(weights_only=True)`. The backbone file is looked up, in order, at:
1. an explicit path (MetricConfig.lpips_weights, the CLI's `--lpips-weights`),
2. the environment variable BENCH_LPIPS_WEIGHTS,
3. torch's cache, `torch.hub.get_dir()/checkpoints/<torchvision file name>`.
An explicit path (1 or 2) may be the file or a folder holding it under torchvision's file name; one that
does not exist is an error. When nothing is found LPIPS is unavailable (None), never computed with random
weights, and a notice saying how to provide the file is shown once per process.
"""

from __future__ import annotations

import functools
import os
import warnings
from pathlib import Path

import torch

from bench.errors import BenchError

ENV_VAR = "BENCH_LPIPS_WEIGHTS"
# torchvision's file names (AlexNet_Weights.IMAGENET1K_V1, VGG16_Weights.IMAGENET1K_V1); a test checks them
BACKBONE_FILES = {"alex": "alexnet-owt-7be5be79.pth", "vgg": "vgg16-397923af.pth"}
# smallest image side the backbone's pooling stack accepts (measured; a test checks it)
MIN_SIDE = {"alex": 31, "vgg": 16}
LPIPS_VERSION = "0.1"

_notice_shown = False  # once-per-process flag for the "weights missing" notice


class LpipsUnavailableWarning(UserWarning):
    """LPIPS backbone weights are not available offline; LPIPS is reported as null."""


def find_backbone_weights(net: str = "alex", explicit: str | os.PathLike | None = None) -> Path | None:
    """The backbone weights file to use, or None when none is available offline.

    Example:
        >>> find_backbone_weights("alex", "~/weights/alexnet-owt-7be5be79.pth")
    """
    name = BACKBONE_FILES[net]
    given, source = (explicit, "--lpips-weights") if explicit else (os.environ.get(ENV_VAR) or None, ENV_VAR)
    if given:
        path = Path(given).expanduser()
        if path.is_dir():
            path = path / name
        if not path.is_file():
            raise BenchError(
                f"LPIPS backbone weights not found at {path} (from {source}); expected torchvision's {name}"
            )
        return path
    cached = Path(torch.hub.get_dir()) / "checkpoints" / name
    return cached if cached.is_file() else None


def missing_weights_notice(net: str = "alex") -> str:
    name = BACKBONE_FILES[net]
    where = Path(torch.hub.get_dir()) / "checkpoints" / name
    return (
        f"LPIPS unavailable: torchvision's ImageNet {net} weights ({name}) were not found offline; "
        f"LPIPS is reported as null. Provide them with --lpips-weights PATH, the environment variable "
        f"{ENV_VAR}=PATH, or by placing the file at {where}."
    )


def notify_missing_weights(net: str = "alex") -> None:
    """Warn, once per process, that LPIPS is unavailable and how to provide the weights."""
    global _notice_shown
    if not _notice_shown:
        _notice_shown = True
        warnings.warn(missing_weights_notice(net), LpipsUnavailableWarning, stacklevel=4)


def _torch_load(path: Path, what: str) -> dict[str, torch.Tensor]:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # unpickling refusals and corrupt files surface as many exception types
        raise BenchError(f"cannot read {what} {path}: {type(err).__name__}: {err}".splitlines()[0]) from None
    if not isinstance(state, dict):
        raise BenchError(f"{what} {path} is not a state dict")
    return state


# cached per file version (path, mtime, size) and device; the model is frozen and never handed out mutable
@functools.lru_cache(maxsize=4)
def _load(net: str, path: str, stamp: tuple[int, int], device: str) -> torch.nn.Module:
    import lpips  # imported lazily: only needed when LPIPS is computed

    with warnings.catch_warnings():
        # lpips asks torchvision for `pretrained=False`, which torchvision flags as deprecated
        warnings.simplefilter("ignore", UserWarning)
        model = lpips.LPIPS(net=net, version=LPIPS_VERSION, pretrained=False, pnet_rand=True, verbose=False)
    state = model.state_dict()
    lin_file = Path(lpips.__file__).parent / "weights" / f"v{LPIPS_VERSION}" / f"{net}.pth"
    lin = _torch_load(lin_file, "lpips linear-layer weights")
    unknown = sorted(set(lin) - set(state))
    if unknown:
        raise BenchError(f"lpips linear-layer weights {lin_file} have unexpected keys {unknown[:3]}")
    state.update(lin)
    backbone = _torch_load(Path(path), "LPIPS backbone weights")
    for key in [k for k in state if k.startswith("net.slice")]:
        # lpips keeps torchvision's layer index inside each slice: net.slice2.3.weight <- features.3.weight
        source = "features." + ".".join(key.split(".")[2:])
        if source not in backbone:
            raise BenchError(f"{path} does not hold torchvision {net} ImageNet weights (no {source})")
        if backbone[source].shape != state[key].shape:
            got, want = tuple(backbone[source].shape), tuple(state[key].shape)
            raise BenchError(f"{path}: {source} has shape {got}, expected {want}")
        state[key] = backbone[source]
    model.load_state_dict(state, strict=True)
    model.eval().requires_grad_(False)
    return model.to(device)


class Lpips:
    """A loaded LPIPS model scoring [0, 1] images; grayscale images are repeated to three channels."""

    def __init__(self, model: torch.nn.Module, net: str) -> None:
        self.model, self.net = model, net

    @classmethod
    def load(cls, net: str, weights: Path, device: torch.device | str = "cpu") -> "Lpips":
        stat = weights.stat()
        return cls(_load(net, str(weights.resolve()), (stat.st_mtime_ns, stat.st_size), str(torch.device(device))), net)

    def _prepare(self, x: torch.Tensor) -> torch.Tensor:
        x = x.float().to(next(self.model.parameters()).device)
        return x.expand(-1, 3, -1, -1) if x.shape[1] == 1 else x

    @torch.no_grad()
    def pairs(self, a: torch.Tensor, b: torch.Tensor, chunk: int = 32) -> torch.Tensor:
        """LPIPS of each pair (a[i], b[i]) with the package's own forward: N -> N (float64, on CPU)."""
        out = [
            self.model(self._prepare(a[s : s + chunk]), self._prepare(b[s : s + chunk]), normalize=True).flatten()
            for s in range(0, a.shape[0], chunk)
        ]
        return torch.cat(out).double().cpu() if out else torch.zeros(0, dtype=torch.float64)

    def _features(self, x: torch.Tensor) -> list[torch.Tensor]:
        import lpips

        outs = self.model.net(self.model.scaling_layer(2 * self._prepare(x) - 1))
        return [lpips.normalize_tensor(o) for o in outs]

    @torch.no_grad()
    def pairwise(self, true: torch.Tensor, rec: torch.Tensor, chunk: int = 32) -> torch.Tensor:
        """LPIPS of every (true, rec) pair: B x B' (float64, on CPU), from features computed once per image.

        Per layer, sum_c w_c mean_hw (a_c - b_c)^2 expands into |a|_w^2 + |b|_w^2 - 2 <a, b>_w, so all
        B x B' distances are matrix products instead of B x B' forward passes.
        """
        weights = [lin.model[-1].weight.view(1, -1, 1, 1) for lin in self.model.lins]
        rec_feats: list[list[torch.Tensor]] = [[] for _ in weights]
        rec_norms: list[list[torch.Tensor]] = [[] for _ in weights]
        for s in range(0, rec.shape[0], chunk):
            for layer, (w, g) in enumerate(zip(weights, self._features(rec[s : s + chunk]))):
                rec_feats[layer].append(g.flatten(1))
                rec_norms[layer].append((g * g * w).flatten(1).sum(1))
        rec_flat = [torch.cat(fs) for fs in rec_feats]
        rec_sq = [torch.cat(ns)[None, :] for ns in rec_norms]
        rows = []
        for s in range(0, true.shape[0], chunk):
            layers = []
            for layer, (w, f) in enumerate(zip(weights, self._features(true[s : s + chunk]))):
                fw = (f * w).flatten(1)
                f_sq = (fw * f.flatten(1)).sum(1, keepdim=True)
                d = (f_sq + rec_sq[layer] - 2.0 * fw @ rec_flat[layer].T).double() / (f.shape[2] * f.shape[3])
                layers.append(d)
            rows.append(torch.stack(layers).sum(0))
        return torch.cat(rows).clamp(min=0.0).cpu()


def open_lpips(
    net: str, explicit: str | None, image_shape: tuple[int, ...], device: torch.device | str
) -> tuple[Lpips | None, str | None]:
    """The LPIPS model for these images, or None and the reason it is unavailable.

    A missing backbone file also raises the once-per-process notice; an unusable image shape does not.
    """
    channels, height, width = image_shape[-3:]
    if channels not in (1, 3):
        return None, f"LPIPS unavailable: needs 1 or 3 channels, images have {channels}"
    if min(height, width) < MIN_SIDE[net]:
        size = f"{height}x{width}"
        return None, f"LPIPS unavailable: the {net} backbone needs images of at least {MIN_SIDE[net]} px, got {size}"
    weights = find_backbone_weights(net, explicit)
    if weights is None:
        notify_missing_weights(net)
        return None, missing_weights_notice(net)
    return Lpips.load(net, weights, device), None
