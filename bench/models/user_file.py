"""A model class from the user's own Python file, named `file:<path>:<ClassName>` (e.g. `file:my_model.py:Net`).

The file is imported once per process under a private module name, with its own folder first on the import
path while it loads (so `from blocks import Block` beside it works). The class is called with the model's
options as keyword arguments and nothing else: the option `args` holds them all (`--model-args` of `bench
audit`; it lets a class take its own `num_classes` or `image_size`, names the registry's builders reserve),
and a sweep may also give them one by one (`model_options`).
the registry's num_classes, channels and image size are not passed to it (lazy layers get their shapes from
one blank batch of that size); whether the model's output has one score per class of the data is checked
before any work (`bench.preflight.check_model`). A Case keeps the name, so the model is rebuilt from the
same file in any process.

Example:
    >>> arch = Architecture("file:my_model.py:Net", num_classes=10, options={"args": {"num_classes": 10}})
    >>> model = build_model(arch, seed=0)   # Net(num_classes=10), its initial weights drawn under seed 0
"""

from __future__ import annotations

import difflib
import hashlib
import importlib.util
import inspect
import sys
import traceback
from pathlib import Path
from types import ModuleType
from typing import Any

import torch
from torch import nn
from torch.nn.parameter import UninitializedParameter

from bench.errors import BenchError
from bench.models import MODELS, ModelBuilder
from bench.registry import Entry, UnknownNameError

PREFIX = "file"
FORM = "file:<path to a .py file>:<ClassName>"


def split_name(rest: str, form: str = FORM, given: str | None = None) -> tuple[Path, str]:
    """(file, class name) of `<path>:<ClassName>`; the class name is what follows the last colon. A text
    of another form is refused with `form` and `given` (default: the registry name) in the message."""
    path, sep, class_name = rest.rpartition(":")
    if not sep or not path or not class_name.isidentifier():
        raise BenchError(f"a model from a file is named {form}, got {given if given is not None else f'{PREFIX}:{rest}'}")
    return Path(path).expanduser(), class_name


def _error_line(err: BaseException) -> str:
    return traceback.format_exception_only(type(err), err)[-1].strip()


def import_file(path: Path) -> ModuleType:
    """The module of a user's .py file, imported once per process (keyed by its resolved path)."""
    if not path.is_file():
        raise BenchError(f"model file {path} " + ("is not a file" if path.exists() else "not found"))
    if path.suffix != ".py":
        raise BenchError(f"model file {path} is not a Python file (.py)")
    resolved = path.resolve()
    name = "bench_user_model_" + hashlib.sha256(str(resolved).encode()).hexdigest()[:12]
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, resolved)
    if spec is None or spec.loader is None:
        raise BenchError(f"model file {path} cannot be imported")
    module = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(resolved.parent))  # the file's own sibling imports
    writes_bytecode, sys.dont_write_bytecode = sys.dont_write_bytecode, True  # no __pycache__ in the user's folder
    try:
        spec.loader.exec_module(module)
    except Exception as err:  # the user's code: any error is one line naming the file
        raise BenchError(f"model file {path} cannot be imported: {_error_line(err)}") from None
    finally:
        sys.path.remove(str(resolved.parent))
        sys.dont_write_bytecode = writes_bytecode
    sys.modules[name] = module
    return module


def module_classes(module: ModuleType) -> list[str]:
    """The nn.Module subclasses the file defines itself (not those it imports)."""
    return sorted(
        n for n, v in vars(module).items()
        if inspect.isclass(v) and issubclass(v, nn.Module) and v.__module__ == module.__name__
    )  # fmt: skip


def model_class(path: Path, class_name: str) -> type[nn.Module]:
    """The class `class_name` of the file, which must be an nn.Module subclass."""
    module = import_file(path)
    found = getattr(module, class_name, None)
    if found is None:
        classes = module_classes(module)
        close = difflib.get_close_matches(class_name, classes, n=3, cutoff=0.4)
        hint = f"did you mean {', '.join(close)}?" if close else (
            f"its nn.Module classes: {', '.join(classes)}" if classes else "it defines no nn.Module class"
        )
        raise UnknownNameError(f"model file {path} has no class {class_name!r}; {hint}")
    if not (inspect.isclass(found) and issubclass(found, nn.Module)):
        raise BenchError(f"{class_name} in model file {path} is not a torch.nn.Module subclass")
    return found


def _builder(cls: type[nn.Module], shown: str) -> ModelBuilder:
    def build(num_classes: int, channels: int, image_size: int, args: dict[str, Any] | None = None, **options: Any) -> nn.Module:
        options = {**(args or {}), **options}
        try:
            model = cls(**options)
        except Exception as err:  # the user's constructor: a bad argument or its own check
            given = ", ".join(f"{k}={v!r}" for k, v in options.items())
            raise BenchError(f"{shown}({given}) cannot be built: {_error_line(err)}") from None
        if any(isinstance(p, UninitializedParameter) for p in model.parameters()):
            _materialise(model, shown, channels, image_size)
        return model

    return build


def _materialise(model: nn.Module, shown: str, channels: int, image_size: int) -> None:
    """Give lazy layers (nn.LazyLinear, ...) their shapes with one blank batch, as their first use would."""
    try:
        with torch.no_grad():
            model.eval()(torch.zeros(2, channels, image_size, image_size))
    except Exception as err:
        raise BenchError(f"{shown} cannot take {channels} x {image_size} x {image_size} images: {_error_line(err)}") from None
    model.train()


def resolve(rest: str) -> Entry[ModelBuilder]:
    """Registry entry for `file:<path>:<ClassName>`; a missing file or class raises one clear error."""
    path, class_name = split_name(rest)
    cls = model_class(path, class_name)
    return Entry(f"{PREFIX}:{rest}", _builder(cls, class_name), f"{class_name} from {path}", {"source": "file"})


MODELS.add_prefix(PREFIX, resolve)
