"""`bench audit`: a user's model file and folder of PNGs, end to end; its parts (the model from a file, the
image folder, budgets, the label floor, the verdict); and the battery of bad inputs it refuses before any work.

`audit_inputs` writes what a user brings (a model file and a folder of PNG images in class folders);
`run_audit` runs the command in this process; the browser test (tests/test_audit_browser.py) opens the
report it writes.
"""

from __future__ import annotations

import json
import math
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

from bench.audit.calibrate import AttackCost, Calibration, fit_line
from bench.audit.findings import Finding, Leak
from bench.audit.folder import check_report_folder, report_folder
from bench.audit.guess import expected_accuracy, prior_guess
from bench.audit.plan import MIN_ITERATIONS, Pace, fit_plan
from bench.audit.target import natural_repetition
from bench.audit.verdict import sentence
from bench.cli import main
from bench.data import open_dataset
from bench.errors import BenchError
from bench.leaderboard import CellStats
from bench.models import MODELS, Architecture, build_model
from bench.record import load_records
from tests.test_bad_input import _refused

# What a user brings: DLG's sigmoid LeNet (no BN; attacks reconstruct B = 1 on it within seconds), a BN
# network, and classes that are no models at all or return the wrong thing.
MODEL_FILE = '''
import torch
from torch import nn


class Net(nn.Module):
    def __init__(self, num_classes=3, image_size=16, width=12):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(3, width, 5, stride=2, padding=2), nn.Sigmoid(),
            nn.Conv2d(width, width, 5, stride=2, padding=2), nn.Sigmoid(),
            nn.Conv2d(width, width, 5, stride=1, padding=2), nn.Sigmoid(),
        )
        self.fc = nn.Linear(width * (image_size // 4) ** 2, num_classes)
        for p in self.parameters():
            nn.init.uniform_(p, -0.5, 0.5)

    def forward(self, x):
        return self.fc(self.body(x).flatten(1))


class LazyBN(nn.Module):
    def __init__(self, classes=3):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.AdaptiveAvgPool2d(2))
        self.head = nn.LazyLinear(classes)

    def forward(self, x):
        return self.head(self.body(x).flatten(1))


class GreyNet(Net):
    def __init__(self):
        super().__init__()
        self.body[0] = nn.Conv2d(1, 12, 5, stride=2, padding=2)


class NoLinear(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 16)

    def forward(self, x):
        return self.conv(x).flatten(1)


class Pair(Net):
    def forward(self, x):
        return super().forward(x), x


NOT_A_MODEL = 3


class Plain:
    pass
'''
CLASSES = ("cat", "dog", "fox")


def write_images(folder: Path, classes=CLASSES, per_class: int = 6, size: int = 48, mode: str = "RGB", seed: int = 0) -> Path:
    """Smooth random colour images (a coarse 4 x 4 grid, bicubic) as PNGs, one sub-folder per class."""
    rng = np.random.default_rng(seed)
    for c, name in enumerate(classes):
        (folder / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            coarse = rng.uniform(0, 255, size=(4, 4, 3))
            coarse[..., c % 3] = 0.5 * coarse[..., c % 3] + 120  # each class its own tint
            image = Image.fromarray(coarse.astype(np.uint8)).resize((size, size), Image.Resampling.BICUBIC)
            image.convert(mode).save(folder / name / f"{i}.png")
    return folder


def audit_inputs(folder: Path) -> tuple[Path, Path]:
    """A user's model file and image folder inside `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    model = folder / "my_model.py"
    model.write_text(MODEL_FILE)
    return model, write_images(folder / "my_images")


def audit_argv(folder: Path, *extra: str) -> list[str]:
    return ["audit", "--model", f"{folder}/my_model.py:Net", "--data", f"{folder}/my_images", "--image-size", "16",
            "--out", f"{folder}/audit", *extra]  # fmt: skip


SMALL = ("--batch-sizes", "1,2", "--cases", "3", "--max-minutes", "1")


def run_audit(folder: Path, *extra: str) -> Path:
    """The end-to-end audit of the small model on the generated PNGs; returns the report folder."""
    audit_inputs(folder)
    assert main(audit_argv(folder, *SMALL, *extra)) == 0
    return folder / "audit"


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> Path:
    return run_audit(tmp_path_factory.mktemp("audit"))


# ---- end to end --------------------------------------------------------------------------------------------


def test_report_has_its_sections_with_the_verdict_first(report: Path):
    html = (report / "index.html").read_text()
    order = [html.index(f'id="{anchor}"') for anchor in ("verdict", "batch-sizes", "b1", "b2", "plots", "method")]
    assert order == sorted(order)
    for words in ("Without a defense", "gain over the prior floor", "label accuracy", "Reconstructions by",
                  "Budgets, fitted to the time allowed", "How this audit ran", "3 cases per batch size"):  # fmt: skip
        assert words in html
    assert "http://" not in html and "https://" not in html and "<script" not in html  # static, no network
    for source in re.findall(r'(?:src|href)="(?!data:)([^"#]+)"', html):
        assert (report / source).exists(), source


def test_report_folder_holds_exactly_the_manifest(report: Path):
    listed = set((report / "manifest.txt").read_text().splitlines())
    present = {p.relative_to(report).as_posix() for p in report.rglob("*") if p.is_file()}
    assert listed == present
    assert not [p for p in report.parent.iterdir() if p.name.endswith(".partial")]


def test_verdict_says_leak_exactly_where_the_records_are_significantly_above_the_floor(report: Path):
    data = json.loads((report / "report.json").read_text())
    assert data["kind"] == "gibench-audit"
    records = load_records(report / "records")
    assert data["runs"]["total"] == len(records) and data["runs"]["failed"] == 0
    guess = {int(b): v for b, v in data["target"]["guess_label_acc"].items()}
    for result in data["results"]:
        b = result["batch_size"]
        at_b = [r for r in records if r.config["scenario"]["batch_size"] == b]
        # images: recomputed from the records' psnr_gain, one attack at a time
        leaks = []
        for attack in result["attacks"]:
            gains = [r.metrics["psnr_gain"] for r in at_b if r.config.get("attack") == attack["attack"] and r.status == "ok"]
            cell = CellStats(tuple(gains), len(gains), gains=tuple(gains))
            assert attack["leaks"] == bool(cell.above_floor) and len(gains) == 3
            leaks.append(attack["leaks"])
        assert result["images_leak"] == any(leaks)
        # labels: accuracy against the expected accuracy of guessing
        for method in result["labels"]:
            accs = [r.metrics["label_acc"] for r in at_b if r.config.get("label_method") == method["method"] and r.status == "ok"]
            if accs:
                cell = CellStats(tuple(accs), len(accs), gains=tuple(a - guess[b] for a in accs))
                assert method["leaks"] == bool(cell.above_floor)
    sentences = data["verdict"][0]["sentences"]
    by_b = {r["batch_size"]: r for r in data["results"]}
    assert sentences[1].startswith("Images leak") == any(r["images_leak"] for r in by_b.values())
    assert sentences[0].startswith("Labels leak") == any(r["labels_leak"] for r in by_b.values())


def test_dlg_reconstructs_the_sigmoid_lenet_at_b1(report: Path):
    """DLG's own regime (leaderboard/calibration.md: +70 dB at 16 px): the audit must find that leak."""
    data = json.loads((report / "report.json").read_text())
    at_1 = next(r for r in data["results"] if r["batch_size"] == 1)
    assert at_1["images_leak"]
    assert "Images leak" in data["verdict"][0]["sentences"][1]


def test_budgets_and_timing_are_recorded(report: Path):
    data = json.loads((report / "report.json").read_text())
    budgets = {(p["attack"], p["batch_size"]): p["iterations"] for p in data["plan"]["budgets"]}
    records = [r for r in load_records(report / "records") if "attack" in r.config]
    assert {(r.config["attack"], r.config["scenario"]["batch_size"]): r.config["budget"] for r in records} == budgets
    assert all(n >= MIN_ITERATIONS for n in budgets.values())
    reasons = {(e["attack"], e["batch_size"]): e["reason"] for e in data["calibration"]["excluded"]}
    assert "at most 1" in reasons[("idlg", 2)] and "BN statistics" in reasons[("gradinversion", 1)]
    assert data["times"]["wall_s"] > 0 and data["plan"]["estimate_s"] > 0
    assert [r["batch_size"] for r in data["plan"]["refits"]] == [2]  # B = 2's budgets fitted after B = 1 ran


def test_an_interrupted_audit_leaves_the_earlier_report_whole(report: Path, monkeypatch, capsys):
    before = {p.relative_to(report): p.read_bytes() for p in report.rglob("*") if p.is_file()}

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr("bench.audit.command.run_cells", interrupted)
    assert main(audit_argv(report.parent, *SMALL)) == 130
    assert {p.relative_to(report): p.read_bytes() for p in report.rglob("*") if p.is_file()} == before
    assert not [p for p in report.parent.iterdir() if p.name.endswith(".partial")]


def test_an_earlier_report_is_replaced_whole(report: Path, tmp_path: Path):
    earlier = tmp_path / "earlier"
    shutil.copytree(report, earlier)
    check_report_folder(earlier)  # an earlier audit's folder may be replaced
    with report_folder(earlier) as partial:
        (partial / "index.html").write_text("new\n")
    assert sorted(p.name for p in earlier.iterdir()) == ["index.html", "manifest.txt", "records"]
    (earlier / "mine.txt").write_text("mine\n")
    with pytest.raises(BenchError, match="mine.txt"):
        check_report_folder(earlier)


# ---- parts ------------------------------------------------------------------------------------------------


def test_model_from_a_file_builds_with_its_arguments_and_materialises_lazy_layers(tmp_path: Path):
    model_file, _ = audit_inputs(tmp_path)
    net = build_model(Architecture(f"file:{model_file}:Net", 3, 3, 16, {"width": 4}), seed=0)
    assert net.fc.in_features == 4 * 16
    lazy = build_model(Architecture(f"file:{model_file}:LazyBN", 3, 3, 16), seed=0)
    assert lazy.head.in_features == 16
    again = build_model(Architecture(f"file:{model_file}:Net", 3, 3, 16, {"width": 4}), seed=0)
    assert all(torch.equal(a, b) for a, b in zip(net.state_dict().values(), again.state_dict().values()))
    assert not (tmp_path / "__pycache__").exists()  # importing the user's file writes nothing beside it
    with pytest.raises(BenchError, match="has no class 'Nett'; did you mean Net"):
        MODELS.get(f"file:{model_file}:Nett")


def test_sweeps_take_a_model_from_a_file(tmp_path: Path, monkeypatch):
    model_file, images = audit_inputs(tmp_path)
    monkeypatch.chdir(tmp_path)
    argv = ["run", "--models", "file:my_model.py:Net", "--dataset", "folder", "--data-path", "my_images", "--attacks",
            "noise", "--image-size", "16", "--batch-sizes", "2", "--seeds", "0", "--no-images", "--out", "runs"]  # fmt: skip
    assert main(argv) == 0
    (record,) = load_records(tmp_path / "runs")
    assert record.status == "ok" and record.config["scenario"]["model"] == "file:my_model.py:Net"


def test_folder_normalisation_is_the_data_own_mean_and_std(tmp_path: Path):
    write_images(tmp_path / "rgb")
    data = open_dataset("folder", str(tmp_path / "rgb"))
    pixels = torch.stack([data.load(i, 64, 0) for i in range(len(data.labels))]).double()
    mean = pixels.mean(dim=(0, 2, 3))
    std = ((pixels**2).mean(dim=(0, 2, 3)) - mean**2).sqrt()
    assert np.allclose(data.normalization.mean, mean.numpy(), atol=1e-4)
    assert np.allclose(data.normalization.std, std.numpy(), atol=1e-4)
    assert data.channels == 3 and data.class_names == list(CLASSES)
    given = open_dataset("folder:0.5,0.5,0.5/0.25,0.25,0.25", str(tmp_path / "rgb"))
    assert given.normalization.std == (0.25, 0.25, 0.25)
    write_images(tmp_path / "grey", mode="L")
    grey = open_dataset("folder", str(tmp_path / "grey"))
    assert grey.channels == 1 and grey.load(0, 16, 0).shape == (1, 16, 16)


def test_natural_repetition_is_the_expected_number_of_distinct_classes():
    balanced = np.full(10, 0.1)
    assert natural_repetition(balanced, 1) == 0.0
    assert natural_repetition(balanced, 8) == pytest.approx(1 - 6 / 8)  # 10 (1 - 0.9^8) = 5.7 distinct
    assert natural_repetition(balanced, 256) == pytest.approx(1 - 10 / 256)


def test_the_label_floor_is_the_expected_accuracy_of_guessing(tmp_path: Path):
    assert prior_guess(np.array([0.5, 0.3, 0.2]), 4).tolist() == [0, 0, 1, 2]
    assert prior_guess(np.full(3, 1 / 3), 2).tolist() == [0, 1]
    data = open_dataset("folder", str(write_images(tmp_path / "two", classes=("a", "b"), per_class=2)))
    # B = 1: the guess is class 0; the sampler draws either class with probability 1/2
    assert expected_accuracy(data, 1, 0.0, np.array([0.5, 0.5])) == pytest.approx(0.5, abs=0.05)
    # B = 2 with both classes: the guess [0, 1] is always right
    assert expected_accuracy(data, 2, 0.0, np.array([0.5, 0.5])) == 1.0


def _cost(per_iteration: float, paper: int | None = 1000) -> AttackCost:
    return AttackCost(fixed_s=0.5, per_iteration_s=per_iteration, score_s=0.1, paper_budget=paper)


def test_budgets_share_the_time_equally_between_the_minimum_and_the_paper_and_drop_what_cannot_run():
    calibration = Calibration(
        costs={("cheap", 1): _cost(0.01, paper=300), ("mid", 1): _cost(0.05), ("dear", 1): _cost(5.0)},
        case_s={(1, "none"): 2.0},
    )  # fmt: skip
    plan = fit_plan(calibration, runs_per_pair=5, cases=5, available_s=200.0)
    assert plan.budgets[("cheap", 1)] == 300  # capped at its paper budget; its time went to the others
    assert ("dear", 1) in plan.dropped and "most expensive" in plan.dropped[("dear", 1)]
    left = 200.0 - plan.cases_s - plan.report_s - 5 * calibration.costs[("cheap", 1)].seconds(300)
    assert plan.budgets[("mid", 1)] == math.floor((left / 5 - 0.6) / 0.05)
    assert plan.estimate_s <= 200.0 + 1e-9
    slow = Calibration(costs={("mid", 1): _cost(0.05, paper=None), ("slow", 1): _cost(3.0)}, case_s={(1, "none"): 2.0})
    plan = fit_plan(slow, runs_per_pair=5, cases=5, available_s=200.0)
    # slow's equal share buys 5 iterations: it gets the minimum, 153 s, and mid what is left: (22 / 5 - 0.6) / 0.05
    assert plan.budgets == {("mid", 1): 76, ("slow", 1): MIN_ITERATIONS}
    with pytest.raises(BenchError, match="ask for at least"):
        fit_plan(calibration, runs_per_pair=5, cases=5, available_s=24.0)  # 4 s left after the cases and report


def test_a_refit_scales_the_costs_by_the_pace_and_never_refuses():
    calibration = Calibration(costs={("mid", 1): _cost(0.05, paper=None), ("mid", 8): _cost(0.5, paper=None)},
                              case_s={(1, "none"): 2.0, (8, "none"): 4.0})  # fmt: skip
    later = calibration.part([8], {"mid": 2.0, "cases": 2.0})
    assert list(later.costs) == [("mid", 8)] and later.costs[("mid", 8)].per_iteration_s == 1.0 and later.case_s == {(8, "none"): 8.0}
    plan = fit_plan(calibration, runs_per_pair=5, cases=5, available_s=500.0)
    refit = fit_plan(later, runs_per_pair=5, cases=5, available_s=300.0, strict=False)
    assert refit.budgets[("mid", 8)] == math.floor(((300.0 - 40.0 - 15.0) / 5 - 1.2) / 1.0)
    plan.adopt(refit, 8, {"mid": 2.0, "cases": 2.0, "other": 3.0})
    assert plan.budgets[("mid", 8)] == refit.budgets[("mid", 8)] and plan.refits == [(8, {"mid": 2.0, "cases": 2.0})]
    late = fit_plan(later, runs_per_pair=5, cases=5, available_s=10.0, strict=False)
    assert not late.budgets and "no time left" in late.dropped[("mid", 8)]


def test_pace_is_measured_against_predicted_time_per_attack():
    pace = Pace()
    pace.add("dlg", 10.0, 40.0)  # converged early: that may not repeat, and the time left says what it saved
    pace.add("inverting-gradients", 60.0, 40.0)  # slower than its first iterations
    pace.add("cases", 100.0, 1.0)  # beyond the limit: a measuring accident
    assert pace.paces(["dlg", "inverting-gradients", "cases", "gradinversion"]) == {
        "dlg": 1.0, "inverting-gradients": 1.5, "cases": 4.0, "gradinversion": 170.0 / 81.0,
    }  # fmt: skip
    assert Pace().paces(["dlg"]) == {"dlg": 1.0}


def test_calibration_fit_is_never_negative():
    assert fit_line((1, 4), (1.0, 2.5)) == pytest.approx((0.5, 0.5))
    fixed, per_iteration = fit_line((1, 4), (2.0, 1.0))  # the second run happened to be faster
    assert fixed >= 0 and per_iteration == pytest.approx(0.25 * 1.0 / 4)


def _finding(b: int, label_accs: tuple[float, ...], gains: tuple[float, ...], guess: float = 0.3) -> Finding:
    labels = Leak("llg", CellStats(label_accs, len(label_accs), gains=tuple(a - guess for a in label_accs)))
    images = Leak("dlg", CellStats(gains, len(gains), gains=gains), budget=100)
    return Finding("none", b, 0.0, (labels,), (images,), guess)


def test_verdict_says_leak_only_where_the_gain_is_significant():
    significant = _finding(1, (1.0, 1.0, 0.9), (40.0, 45.0, 50.0))
    noisy = _finding(8, (0.2, 0.9, 0.3), (30.0, -20.0, 5.0))  # positive mean gains whose CI spans 0
    assert noisy.best("images").cell.mean > 0 and not noisy.images_leak and not noisy.labels_leak
    text, leaks = sentence([significant, noisy], "images")
    assert leaks and text.startswith("Images leak up to B = 1: at B = 1, dlg") and "not significantly above the floor at B = 8" in text
    assert sentence([significant, noisy], "labels") == (
        "Labels leak up to B = 1: at B = 1, 97% recovered by llg (95% CI ± 14%; guessing from the class frequencies: "
        "30%); not significantly beyond guessing at B = 8.", True,
    )  # mean 0.967, half-width t(0.975, 2) x 0.0577 / sqrt(3) = 0.143
    assert sentence([noisy], "images") == (
        "No attack reconstructs images significantly better than the prior floor at any B tested within this audit's "
        "compute (closest: dlg at B = 8, +5.0 ± 62.1 dB over the floor).", False,
    )  # mean 5, half-width 4.303 x 25 / sqrt(3)
    failed = Finding("none", 1, 0.0, (), (Leak("dlg", CellStats((40.0, 45.0), 2, n_failed=1, gains=(40.0, 45.0))),), 0.3)
    assert not failed.images_leak  # a failed case leaves the claim unproven


# ---- bad input: one line, exit 2, nothing written ----------------------------------------------------------------


def _weights(tmp: Path) -> None:
    net = build_model(Architecture(f"file:{tmp}/my_model.py:Net", 3, 3, 16, {"width": 4}), 0)
    save_file(net.state_dict(), str(tmp / "small.safetensors"))
    (tmp / "text.pth").write_text("not a checkpoint\n")


def _bad_folders(tmp: Path) -> None:
    write_images(tmp / "one", classes=("only",), per_class=2)
    (tmp / "empty" / "a").mkdir(parents=True)
    write_images(tmp / "broken", per_class=2)
    (tmp / "broken" / "cat" / "9.png").write_text("not an image")
    (tmp / "foreign").mkdir()
    (tmp / "foreign" / "notes.txt").write_text("mine\n")
    (tmp / "a-file").write_text("mine\n")
    (tmp / "bad_syntax.py").write_text("class Net(:\n")
    (tmp / "model.txt").write_text(MODEL_FILE)


BASE = ["audit", "--model", "{tmp}/my_model.py:Net", "--data", "{tmp}/my_images", "--image-size", "16", "--out", "{tmp}/out"]


def _with(flag: str, value: str) -> list[str]:
    argv = list(BASE)
    if flag in argv:
        argv[argv.index(flag) + 1] = value
        return argv
    return [*argv, flag, value]


AUDIT_BATTERY = {
    "model-file-missing": (_with("--model", "{tmp}/nothing.py:Net"), "model file {tmp}/nothing.py not found"),
    "model-not-python": (_with("--model", "{tmp}/model.txt:Net"), "is not a Python file"),
    "model-no-class-given": (_with("--model", "{tmp}/my_model.py"), "path/to/file.py:ClassName, got --model"),
    "model-syntax-error": (_with("--model", "{tmp}/bad_syntax.py:Net"), "cannot be imported: SyntaxError"),
    "class-missing": (_with("--model", "{tmp}/my_model.py:Nett"), "has no class 'Nett'; did you mean Net"),
    "class-not-module": (_with("--model", "{tmp}/my_model.py:Plain"), "Plain in model file"),
    "class-not-class": (_with("--model", "{tmp}/my_model.py:NOT_A_MODEL"), "is not a torch.nn.Module subclass"),
    "model-args-not-json": (_with("--model-args", "{width: 4}"), "--model-args is not valid JSON"),
    "model-args-list": (_with("--model-args", "[4]"), "must be a JSON object"),
    "model-args-unknown": (_with("--model-args", '{"colour": 1}'), "Net(colour=1) cannot be built: TypeError"),
    "output-classes": (_with("--model-args", '{"num_classes": 5}'), "the data has 3 classes"),
    "output-tuple": (_with("--model", "{tmp}/my_model.py:Pair"), "returns a tuple"),
    "no-linear": (_with("--model", "{tmp}/my_model.py:NoLinear"), "has no nn.Linear layer"),
    "image-size": (_with("--image-size", "32"), "cannot take the images of --data (3 x 32 x 32"),
    "channels": (_with("--model", "{tmp}/my_model.py:GreyNet"), "cannot take the images of --data (3 x 16 x 16"),
    "weights-missing": (_with("--weights", "{tmp}/none.safetensors"), "not found"),
    "weights-shape": (_with("--weights", "{tmp}/small.safetensors"), "does not fit the model; shape mismatch"),
    "weights-text": (_with("--weights", "{tmp}/text.pth"), "text.pth' holds pickled objects other than tensors and is refused"),
    "data-missing": (_with("--data", "{tmp}/nowhere"), "--data {tmp}/nowhere not found"),
    "data-one-class": (_with("--data", "{tmp}/one"), "has one class (only)"),
    "data-no-images": (_with("--data", "{tmp}/empty"), "no class folders with images"),
    "data-broken-image": (_with("--data", "{tmp}/broken"), "cannot decode image"),
    "out-foreign": (_with("--out", "{tmp}/foreign"), "holds notes.txt, which no earlier rendering of an audit report wrote"),
    "out-file": (_with("--out", "{tmp}/a-file"), "is a file"),
    "batch-sizes-zero": ([*BASE, "--batch-sizes", "0,2"], "--batch-sizes takes integers of at least 1"),
    "batch-sizes-float": ([*BASE, "--batch-sizes", "1.5"], "--batch-sizes takes integers of at least 1"),
    "cases-one": ([*BASE, "--cases", "1"], "must be at least 2"),
    "minutes-zero": ([*BASE, "--max-minutes", "0"], "must be a positive number"),
    "defense-unknown": ([*BASE, "--defenses", "shield(1)"], "unknown defense 'shield'"),
    "defense-dp-train-bn": ([*BASE, "--defenses", "dp(clip=1, sigma=0.5)"], "needs per-sample gradients"),
    "local-batch": ([*BASE, "--batch-sizes", "4", "--local-steps", "2", "--local-batch-size", "3"], "must divide"),
    "attack-unknown": ([*BASE, "--attacks", "dlgg"], "unknown attack 'dlgg'"),
    "attack-floor": ([*BASE, "--attacks", "prior-grey"], "the prior floors are scored on every case"),
    "bn-stats-no-bn": ([*BASE, "--bn-stats", "exact"], "has no BatchNorm layers"),
    "normalization-bad": ([*BASE, "--normalization", "0.5/0"], "a normalisation is written <mean>/<std>"),
    "normalization-channels": ([*BASE, "--normalization", "0.5/0.25"], "has 1 value(s) per statistic; the images"),
}


@pytest.mark.parametrize("name", sorted(AUDIT_BATTERY))
def test_bad_audit_input_is_refused_with_one_line(name: str, tmp_path: Path, capsys, monkeypatch):
    argv, fragment = AUDIT_BATTERY[name]
    tmp = tmp_path / "t"
    audit_inputs(tmp)
    _weights(tmp)
    _bad_folders(tmp)
    for work in ("bench.audit.command.calibrate", "bench.audit.command.run_cells"):
        monkeypatch.setattr(work, _must_not_run)
    monkeypatch.chdir(tmp)
    line = _refused([a.replace("{tmp}", str(tmp)) for a in argv], tmp, capsys)
    assert fragment.replace("{tmp}", str(tmp)) in line


def _must_not_run(*args, **kwargs):
    raise AssertionError("work started before the input was refused")


def test_too_little_time_is_refused_after_the_calibration_with_nothing_written(tmp_path: Path, capsys):
    audit_inputs(tmp_path)
    line = _refused(audit_argv(tmp_path, "--batch-sizes", "1", "--max-minutes", "0.05"), tmp_path, capsys)
    assert "ask for at least" in line
