"""Any timm model by name, as `timm:<name>` (e.g. `timm:resnet10t`), always built without pretrained weights.

Pretrained weights come from a local file through `bench.models.weights`, never from the hub, so names
that point at a remote source (`hf-hub:...`) are refused along with unknown names.
"""

from __future__ import annotations

import difflib
from typing import Any

from torch import nn

from bench.errors import BenchError
from bench.models import MODELS, ModelBuilder
from bench.registry import Entry, UnknownNameError

PREFIX = "timm"


def _builder(name: str) -> ModelBuilder:
    def build(num_classes: int, channels: int, image_size: int, **options: Any) -> nn.Module:
        import timm
        from timm.models import get_pretrained_cfg

        kwargs = {k: v for k, v in options.items() if v is not None}
        cfg = get_pretrained_cfg(name.split(".")[0])
        if cfg is not None and cfg.fixed_input_size:
            # models with a fixed input size (ViTs, Swin) size their position embeddings from img_size
            kwargs.setdefault("img_size", image_size)
        try:
            return timm.create_model(name, pretrained=False, num_classes=num_classes, in_chans=channels, **kwargs)
        except TypeError as err:
            raise BenchError(f"timm model {name!r} rejected its options {sorted(kwargs)}: {err}") from err

    return build


def resolve(name: str) -> Entry[ModelBuilder]:
    """Registry entry for timm model `name`; an unknown name raises with the closest timm names."""
    import timm  # imported on first use: it adds a third to `import bench.models` for runs that never use it

    if not timm.is_model(name):
        close = difflib.get_close_matches(name, timm.list_models(), n=3, cutoff=0.6)
        hint = f"; did you mean {', '.join(f'{PREFIX}:{c}' for c in close)}?" if close else ""
        raise UnknownNameError(f"unknown timm model {name!r}{hint}")
    return Entry(f"{PREFIX}:{name}", _builder(name), f"timm {name} (random init)", {"source": "timm"})


MODELS.add_prefix(PREFIX, resolve)
