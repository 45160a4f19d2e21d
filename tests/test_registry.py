import pytest

from bench.attack import ATTACKS
from bench.data import DATASETS
from bench.labels import LABELS
from bench.models import MODELS
from bench.registry import Registry, UnknownNameError


def test_duplicate_name_raises():
    registry: Registry[int] = Registry("thing")
    registry.add("a", 1, "first")
    with pytest.raises(ValueError, match="duplicate thing name 'a'"):
        registry.add("a", 2, "second")


def test_unknown_name_suggests_closest():
    registry: Registry[int] = Registry("thing")
    for name in ("inverting-gradients", "gradinversion", "dlg"):
        registry.add(name, 0, name)
    with pytest.raises(UnknownNameError, match="did you mean gradinversion"):
        registry.get("gradinversio")


def test_globs_include_exclude_and_all():
    registry: Registry[int] = Registry("thing")
    for name in ("e2egi", "e2egi-no-mlco", "dlg", "idlg"):
        registry.add(name, 0, name)
    assert registry.names("e2egi*") == ["e2egi", "e2egi-no-mlco"]
    assert registry.names("*", exclude="*dlg") == ["e2egi", "e2egi-no-mlco"]
    assert registry.select(["all"]) == ["dlg", "e2egi", "e2egi-no-mlco", "idlg"]
    assert registry.select(["dlg", "d*"]) == ["dlg"]
    with pytest.raises(UnknownNameError, match="no thing matches"):
        registry.select(["z*"])


def test_description_must_be_one_line():
    with pytest.raises(ValueError, match="one-line"):
        Registry("thing").add("a", 0, "two\nlines")


def test_every_kind_is_populated():
    assert "noise" in ATTACKS
    assert {"lenet", "convnet", "resnet18", "resnet50"} <= set(MODELS.names())
    assert "embedded" in DATASETS
    assert {"idlg", "yin", "llg", "e2egi"} <= set(LABELS.names())
    assert MODELS.get("timm:resnet10t").name == "timm:resnet10t"
