"""Leaderboard: means and 95% CIs against hand computation, failures and skips counted, arrows, the four
formats byte for byte, plots and image grids as PNGs of the documented sizes, and one-line user errors."""

from __future__ import annotations

import csv
import hashlib
import io
import math
import random
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from bench.errors import BenchError
from bench.grid import MISSING, grid_image, run_grid_path, save_attack_grid, save_grid
from bench.leaderboard import (
    CellStats,
    aggregate,
    latex_escape,
    load_runs,
    load_sweep,
    mean_ci95,
    render,
    t_quantile,
    tables_for,
    views_for,
    write_leaderboard,
    write_plots,
)
from bench.leaderboard.plots import DPI, FIGSIZE, wrap_parts
from bench.record import Record, run_id, save_record
from bench.scenario import Scenario
from bench.threat import ThreatModel

# t_{0.975} in closed form (tables: 4.303 and 12.706). With 2 dof the CDF is 1/2 + t / (2 sqrt(2 + t^2)),
# so t / sqrt(2 + t^2) = 0.95; with 1 dof (Cauchy) t = tan(pi (0.975 - 1/2)).
T_975_2 = math.sqrt(2 * 0.95**2 / (1 - 0.95**2))
T_975_1 = math.tan(math.pi * 0.475)


def make_record(
    method: str = "dlg",
    batch_size: int = 4,
    seed: int = 0,
    status: str = "ok",
    metrics: dict | None = None,
    repetition: float = 0.0,
    labels_known: bool = False,
    bn_stats: str = "exact",
    track: str = "attack",
    budget: int | None = 10,
    wall_s: float = 3.0,
    commit: str = "0123456789abcdef",
    device: str = "cpu",
    **scenario: object,
) -> Record:
    s = Scenario(
        batch_size=batch_size, seed=seed, repetition=repetition,
        threat=ThreatModel(labels_known=labels_known, bn_stats=bn_stats), **scenario,
    )
    config = {"scenario": s.to_dict(), track: method, "budget": budget}
    return Record(
        run_id=run_id(config),
        config=config,
        status=status,
        metrics=dict(metrics or {}) if status == "ok" else {},
        cost={"wall_s": wall_s, "cpu_s": wall_s} if status == "ok" else {},
        environment={"git_commit": commit, "device": device},
        error=None if status == "ok" else f"{status} on purpose",
    )


def sweep_records() -> list[Record]:
    """dlg: PSNR 1, 2, 3 at B=4 and 5 + a failure at B=8; ig: one run at B=4 and a skip at B=8."""
    return [
        *(make_record("dlg", 4, seed, metrics={"psnr": v, "lpips": v / 10}) for seed, v in enumerate([1.0, 2.0, 3.0])),
        make_record("dlg", 8, 0, metrics={"psnr": 5.0}),
        make_record("dlg", 8, 1, status="failed"),
        make_record("ig", 4, 0, metrics={"psnr": 7.0}, wall_s=5.0),
        make_record("ig", 8, 0, status="skipped"),
    ]


@pytest.fixture
def runs(tmp_path: Path) -> Path:
    folder = tmp_path / "runs"
    for record in sweep_records():
        save_record(record, folder)
    return folder


# --- statistics -------------------------------------------------------------------------------------


def test_mean_and_ci_match_hand_computation():
    assert t_quantile(3) == pytest.approx(T_975_2, rel=1e-9) and T_975_2 == pytest.approx(4.303, abs=1e-3)
    mean, ci = mean_ci95([1.0, 2.0, 3.0])
    assert mean == 2.0
    assert ci == pytest.approx(T_975_2 * 1.0 / math.sqrt(3), rel=1e-12)  # s = 1
    assert ci == pytest.approx(2.484, abs=1e-3)
    mean, ci = mean_ci95([1.0, 3.0])  # s = sqrt(2): CI = t * sqrt(2) / sqrt(2) = t
    assert (mean, ci) == (2.0, pytest.approx(T_975_1, rel=1e-12))
    assert mean_ci95([4.5]) == (4.5, None)
    assert mean_ci95([]) == (None, None)
    assert mean_ci95([3.0, 3.0, 3.0]) == (3.0, 0.0)


def test_cell_text_counts_every_run():
    assert CellStats((1.0, 2.0, 3.0), n_ok=3).text(2) == "2.00 ± 2.48"
    assert CellStats((23.1, 23.3), n_ok=2, n_failed=1).text(1) == f"23.2 ± {T_975_1 * 0.1 / 1:.1f} (2/3)"
    assert CellStats((5.0,), n_ok=1).text(2) == "5.00 ± –"
    assert CellStats((), n_skipped=2).text(2) == "skipped"
    assert CellStats((), n_failed=1, n_skipped=1).text(2) == "failed (0/2)"
    assert CellStats((), n_ok=1).text(3) == "n/a (0/1)"  # an ok run without the metric (LPIPS unavailable)
    assert CellStats((-0.0001,), n_ok=1).text(2) == "0.00 ± –"  # no negative zero
    assert CellStats().text(2) == ""


def test_above_the_floor_needs_every_seed_and_a_ci_clear_of_zero():
    assert CellStats((30.0, 31.0, 32.0), n_ok=3, gains=(5.0, 6.0, 7.0)).above_floor is True  # 6 ± 2.48
    assert CellStats((30.0, 31.0, 32.0), n_ok=3, gains=(1.0, 6.0, 11.0)).above_floor is False  # 6 ± 12.4
    assert CellStats((30.0,), n_ok=1, gains=(9.0,)).above_floor is False  # one seed: no interval, no claim
    assert CellStats((30.0, 31.0), n_ok=2, n_failed=1, gains=(5.0, 6.0)).above_floor is False  # a failed seed
    assert CellStats((-3.0, -2.0, -1.0), n_ok=3, gains=(-3.0, -2.0, -1.0)).above_floor is False  # below
    assert CellStats((30.0, 31.0), n_ok=2).above_floor is None  # no gain recorded (old records, label track)
    marked = CellStats((30.0, 31.0, 32.0), n_ok=3, gains=(5.0, 6.0, 7.0))
    assert marked.text(2, mark_floor=True) == "31.00 ± 2.48 *" and marked.text(2) == "31.00 ± 2.48"


def _floor_records() -> list[Record]:
    """An attack clear of the floor at B=1, at the floor at B=2; both floors and the random start."""
    gains = {("dlg", 1): (10.0, 12.0, 14.0), ("dlg", 2): (-1.0, 2.0, 0.5), ("prior-grey", 1): (-1.0,) * 3,
             ("prior-mean", 1): (0.0,) * 3, ("noise", 1): (-12.0,) * 3, ("prior-grey", 2): (0.0,) * 3,
             ("prior-mean", 2): (-0.5,) * 3, ("noise", 2): (-11.0,) * 3}  # fmt: skip
    return [
        make_record(method, batch, seed, metrics={"psnr": 20.0 + gain, "ssim": 0.5, "psnr_gain": gain})
        for (method, batch), values in gains.items()
        for seed, gain in enumerate(values)
    ]


def test_tables_list_the_floors_after_the_attacks_and_mark_cells_above_them(tmp_path: Path):
    records = _floor_records()
    (table,) = aggregate(records, metric="psnr")
    assert [row.label for row in table.rows] == [
        "dlg", "prior-grey (floor)", "prior-mean (floor)", "noise (random start)"
    ]  # fmt: skip
    dlg = table.text_rows()[0]
    assert dlg[1].endswith(" *") and not dlg[2].endswith("*")  # B=1 clear of the floor, B=2 not
    assert not any(cell.endswith("*") for row in table.text_rows()[1:] for cell in row)
    (gain,) = aggregate(records, metric="psnr_gain")
    assert gain.text_rows()[0][1] == "12.00 ± 4.97 *"
    (ssim,) = aggregate(records, metric="ssim")
    assert not ssim.marks_floor and not any("*" in cell for row in ssim.text_rows() for cell in row)
    for record in records:
        save_record(record, tmp_path / "runs")
    md = write_leaderboard(tmp_path / "runs", format="md", plots_dir=tmp_path / "plots")
    assert "*: significantly above the prior floor" in md.splitlines()[0]
    assert Image.open(next((tmp_path / "plots").glob("psnr-vs-B-*.png"))).size == (640, 400)
    rows = list(csv.DictReader(io.StringIO(write_leaderboard(tmp_path / "runs", format="csv"))))
    dlg1 = next(r for r in rows if r["method"] == "dlg" and r["column_value"] == "1")
    assert (float(dlg1["gain_mean"]), dlg1["above_floor"]) == (12.0, "true")
    assert next(r for r in rows if r["method"] == "dlg" and r["column_value"] == "2")["above_floor"] == "false"


def test_tables_without_gains_carry_no_marks(runs: Path):
    assert "significantly above" not in write_leaderboard(runs, format="md")
    rows = list(csv.DictReader(io.StringIO(write_leaderboard(runs, format="csv"))))
    assert {r["above_floor"] for r in rows} == {""}


# --- aggregation ------------------------------------------------------------------------------------


def test_aggregate_cells_from_saved_records(runs: Path):
    (table,) = aggregate(load_runs(runs), rows="attack", columns="batch_size", metric="psnr")
    assert table.columns == (4.0, 8.0)
    dlg, ig = table.rows
    assert (dlg.method, ig.method) == ("dlg", "ig")

    b4 = dlg.cells[0]
    assert (b4.n_ok, b4.n_total) == (3, 3)
    assert b4.mean == 2.0 and b4.ci95 == pytest.approx(2.484, abs=1e-3)
    b8 = dlg.cells[1]
    assert (b8.n_values, b8.n_ok, b8.n_failed, b8.n_total) == (1, 1, 1, 2)  # the failure is counted
    assert ig.cells[1].n_skipped == ig.cells[1].n_total == 1

    assert table.text_rows() == [
        ["dlg", "2.00 ± 2.48", "5.00 ± – (1/2)", "3.00", "<0.01"],
        ["ig", "7.00 ± –", "skipped", "5.00", "<0.01"],
    ]
    assert dlg.wall_s_mean == 3.0 and dlg.wall_h_total == pytest.approx(12.0 / 3600)
    assert table.footnote == "7 runs: 5 ok, 1 failed, 1 skipped · commit 0123456789 · device cpu"


def test_arrows_follow_the_metric_catalogue(runs: Path):
    records = load_runs(runs)
    (psnr,) = aggregate(records, metric="psnr")
    (lpips,) = aggregate(records, metric="lpips")
    assert psnr.headers()[0] == "attack (psnr ↑)" and psnr.title.endswith("psnr ↑ (dB)")
    assert lpips.headers()[0] == "attack (lpips ↓)" and lpips.title.endswith("lpips ↓")
    assert lpips.text_rows()[0][1] == "0.200 ± 0.248"
    assert lpips.text_rows()[1][1] == "n/a (0/1)"  # ig ran but recorded no LPIPS
    with pytest.raises(BenchError, match="unknown metric"):
        aggregate(records, metric="psnrr")


def test_groups_split_what_must_not_be_averaged():
    records = [
        make_record("dlg", 4, 0, metrics={"psnr": 10.0}),
        make_record("dlg", 4, 1, metrics={"psnr": 12.0}),
        make_record("dlg", 4, 0, metrics={"psnr": 30.0}, labels_known=True),
        make_record("dlg", 4, 0, metrics={"psnr": 20.0}, repetition=0.5),
        make_record("dlg", 4, 0, metrics={"psnr": 40.0}, train_steps=100, model_options={"width": 8}),
        make_record("dlg", 4, 0, metrics={"psnr": 50.0}, bn_stats="none"),
        make_record("dlg", 4, 0, metrics={"psnr": 60.0}, budget=20),
    ]
    tables = aggregate(records, columns="batch_size")
    titles = [t.title for t in tables]
    assert titles == [
        "labels known, BN exact · embedded · convnet · 32 px · r=0 · psnr ↑ (dB)",
        "labels unknown, BN none · embedded · convnet · 32 px · r=0 · psnr ↑ (dB)",
        "labels unknown, BN exact · embedded · convnet · 32 px · r=0 · psnr ↑ (dB)",
        "labels unknown, BN exact · embedded · convnet · 32 px · r=0 · model_options.width=8 · train_steps=100 · psnr ↑ (dB)",
        "labels unknown, BN exact · embedded · convnet · 32 px · r=0.5 · psnr ↑ (dB)",
    ]
    assert tables[3].group.slug() == "attack_labels-unknown_bn-exact_embedded_convnet_32-px_r=0_model_options.width=8_train_steps=100"
    seeds = tables[2]
    assert [r.label for r in seeds.rows] == ["dlg (10 it)", "dlg (20 it)"]  # budgets are separate rows
    assert seeds.rows[0].cells[0].values == (10.0, 12.0)

    by_repetition = aggregate(records[:4], columns="repetition")
    assert [t.title.split(" · ")[4] for t in by_repetition] == ["B=4", "B=4"]
    assert by_repetition[1].columns == (0.0, 0.5)
    assert by_repetition[1].headers()[1:3] == ["r=0", "r=0.5"]


def test_label_track_has_its_own_tables():
    records = [
        make_record("llg", 8, seed, metrics={"label_acc": acc}, repetition=0.75, track="label_method", budget=None)
        for seed, acc in enumerate([0.5, 0.75])
    ] + [make_record("dlg", 8, 0, metrics={"psnr": 9.0, "label_acc": 1.0})]
    (labels,) = aggregate(records, rows="label_method", columns="repetition", metric="label_acc")
    assert labels.headers()[:2] == ["label method (label_acc ↑)", "r=0.75"]
    assert labels.rows[0].cells[0].values == (0.5, 0.75) and labels.rows[0].wall_s_mean == 3.0
    assert [t.rows[0].method for t in aggregate(records, rows="attack", metric="label_acc")] == ["dlg"]


def test_records_without_a_method_are_errors():
    bad = make_record()
    bad.config = {"scenario": bad.config["scenario"]}
    with pytest.raises(BenchError, match="neither 'attack' nor 'label_method'"):
        aggregate([bad])
    with pytest.raises(BenchError, match="unknown column axis"):
        aggregate([], columns="seed")


def test_commits_and_devices_that_differ_are_named():
    records = [
        make_record("dlg", 4, 0, metrics={"psnr": 1.0}),
        make_record("dlg", 4, 1, metrics={"psnr": 2.0}, commit="fedcba9876543210+dirty", device="NVIDIA H100"),
    ]
    (table,) = aggregate(records)
    assert table.footnote == (
        "2 runs: 2 ok, 0 failed, 0 skipped · commits differ: 0123456789 (1 run), fedcba9876+dirty (1 run)"
        " · devices differ: NVIDIA H100 (1 run), cpu (1 run)"
    )


# --- rendering --------------------------------------------------------------------------------------

EXPECTED_MD = """\
Cells: mean ± 95% CI over seeds (Student t, n-1 dof; ± – for a single seed); (k/n): runs that gave a value / all runs, failed and skipped runs included.

### labels unknown, BN exact · embedded · convnet · 32 px · r=0 · psnr ↑ (dB)

| attack (psnr ↑)   |         B=4 |            B=8 |   s/run |   total h |
|-------------------|-------------|----------------|---------|-----------|
| dlg               | 2.00 ± 2.48 | 5.00 ± – (1/2) |    3.00 |     <0.01 |
| ig                |    7.00 ± – |        skipped |    5.00 |     <0.01 |

7 runs: 5 ok, 1 failed, 1 skipped · commit 0123456789 · device cpu
"""


def test_markdown_is_byte_for_byte(runs: Path):
    assert write_leaderboard(runs, format="md") == EXPECTED_MD


def test_all_formats_render_deterministically(runs: Path, tmp_path: Path):
    records = load_runs(runs)
    shuffled = records[::-1]
    random.Random(0).shuffle(shuffled)
    for fmt in ("md", "latex", "csv", "html"):
        text = render(aggregate(records), fmt)
        assert text == render(aggregate(shuffled), fmt), fmt
        out = write_leaderboard(runs, tmp_path / "out" / f"board.{fmt}", fmt)
        assert (tmp_path / "out" / f"board.{fmt}").read_bytes() == text.encode() == out.encode()


def test_out_may_name_a_folder(runs: Path, tmp_path: Path):
    write_leaderboard(runs, f"{tmp_path / 'new'}/", "latex")  # a trailing slash: a folder to create
    (tmp_path / "existing").mkdir()
    write_leaderboard(runs, tmp_path / "existing", "csv")
    assert (tmp_path / "new" / "leaderboard.tex").is_file() and (tmp_path / "existing" / "leaderboard.csv").is_file()


def test_latex_escapes_plus_minus_and_specials(tmp_path: Path):
    save_record(make_record("dlg_v2", 4, 0, metrics={"psnr": 1.0}), tmp_path)
    save_record(make_record("dlg_v2", 4, 1, metrics={"psnr": 3.0}), tmp_path)
    latex = write_leaderboard(tmp_path, format="latex")
    body = [line for line in latex.splitlines() if not line.startswith("%")]
    assert not any(ch in line for line in body for ch in "±↑↓·–")
    assert r"dlg\_v2" in latex and r"2.00 $\pm$ 12.71" in latex
    assert r"\toprule" in latex and r"\bottomrule" in latex and r"\begin{tabular}{lrrr}" in latex
    assert r"\caption{labels unknown, BN exact $\cdot$ embedded" in latex and r"psnr $\uparrow$ (dB)}" in latex
    assert latex_escape("a_b & 50% ± x") == r"a\_b \& 50\% $\pm$ x"


def test_csv_keeps_numbers_apart(runs: Path):
    rows = list(csv.DictReader(io.StringIO(write_leaderboard(runs, format="csv"))))
    assert len(rows) == 4  # dlg and ig at B=4 and B=8
    dlg4 = next(r for r in rows if r["method"] == "dlg" and r["column_value"] == "4")
    assert float(dlg4["mean"]) == 2.0 and float(dlg4["ci95"]) == pytest.approx(2.484, abs=1e-3)
    assert (dlg4["n_ok"], dlg4["n_total"], dlg4["metric"], dlg4["better"]) == ("3", "3", "psnr", "higher")
    dlg8 = next(r for r in rows if r["method"] == "dlg" and r["column_value"] == "8")
    assert (dlg8["mean"], dlg8["ci95"], dlg8["n_values"], dlg8["n_failed"], dlg8["n_total"]) == ("5", "", "1", "1", "2")
    ig8 = next(r for r in rows if r["method"] == "ig" and r["column_value"] == "8")
    assert (ig8["mean"], ig8["n_skipped"], ig8["n_total"]) == ("", "1", "1")


def test_html_escapes_names(tmp_path: Path):
    save_record(make_record("a<b>", 4, 0, metrics={"psnr": 1.0}), tmp_path)
    page = write_leaderboard(tmp_path, format="html")
    assert "a&lt;b&gt;" in page and "<b>" not in page
    assert "<h3>labels unknown, BN exact · embedded" in page and '<p class="footnote">1 run: 1 ok' in page


def test_views_for_metrics_and_columns(runs: Path):
    md = write_leaderboard(runs, format="md", views=views_for(["ssim", "psnr"], "batch_size"))
    assert md.index("ssim ↑") < md.index("psnr ↑ (dB)")
    assert views_for() == views_for(None, None) and len(views_for()) == 2


def test_user_errors_are_one_line(tmp_path: Path, runs: Path):
    cases = [
        (lambda: write_leaderboard(tmp_path / "missing", format="md"), "does not exist"),
        (lambda: write_leaderboard(tmp_path / "empty", format="md"), "no records"),
        (lambda: write_leaderboard(runs, format="pdf"), "unknown table format 'pdf'"),
    ]
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "case.json").write_text('{"schema": 1, "batch_size": 4}')  # not a record: ignored
    for call, message in cases:
        with pytest.raises(BenchError, match=message) as err:
            call()
        assert "\n" not in str(err.value)
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    with pytest.raises(BenchError, match="cannot write plots to"):
        write_leaderboard(runs, format="md", plots_dir=blocker / "plots")
    with pytest.raises(BenchError, match="cannot write"):
        write_leaderboard(runs, blocker / "board.md", "md")
    copy = tmp_path / "runs" / "again"
    save_record(sweep_records()[0], copy)
    with pytest.raises(BenchError, match="recorded twice"):
        load_runs(tmp_path / "runs")


# --- plots and grids --------------------------------------------------------------------------------


def _png_size(path: Path) -> tuple[int, int]:
    with Image.open(path) as image:
        assert image.format == "PNG"
        image.verify()
        return image.size


def test_plots_are_pngs_with_deterministic_names(runs: Path, tmp_path: Path):
    records = load_runs(runs) + [
        make_record("llg", 8, seed, metrics={"label_acc": 0.5 + seed / 10}, repetition=r, track="label_method")
        for seed in (0, 1) for r in (0.0, 0.5)
    ]
    tables = tables_for(records)
    paths = write_plots(tables, tmp_path / "plots")
    slugs = ["attack_labels-unknown_bn-exact_embedded_convnet_32-px_r=0",
             "label_method_labels-unknown_bn-exact_embedded_convnet_32-px_b=8"]  # fmt: skip
    digests = [hashlib.sha256(slug.encode()).hexdigest()[:8] for slug in slugs]
    assert [p.name for p in paths] == [f"psnr-vs-B-{digests[0]}.png", f"label_acc-vs-r-{digests[1]}.png"]
    for path in paths:
        assert _png_size(path) == (int(FIGSIZE[0] * DPI), int(FIGSIZE[1] * DPI))
    assert [p.name for p in write_plots(tables_for(records), tmp_path / "again")] == [p.name for p in paths]
    # the index names every plot with the setting of its table
    index = (tmp_path / "plots" / "index.md").read_text().splitlines()
    assert index[2:] == [f"| [{p.name}]({p.name}) | {t.title} |" for p, t in zip(paths, tables)]
    # stable: a table of another setting does not rename the plots already there
    more = records + [make_record("dlg", 4, 0, metrics={"psnr": 1.0}, bn_stats="none")]
    assert {p.name for p in paths} < {p.name for p in write_plots(tables_for(more), tmp_path / "more")}


def test_plot_titles_break_between_parts_and_keep_every_part():
    parts = ["labels unknown", "BN exact", "embedded", "resnet50", "224 px", "B=256", "client_memory=low",
             "label_source=model", "num_classes=1000"]
    title = wrap_parts(parts, width=40)
    lines = title.split("\n")
    assert len(lines) > 1 and all(len(line) <= 40 for line in lines)
    assert " · ".join(lines) == " · ".join(parts)
    assert wrap_parts(["a" * 50, "b"], width=40) == "a" * 50 + "\nb"  # an over-long part keeps its own line
    assert wrap_parts(["a", "b"]) == "a · b"


def test_grid_layout_and_pixels(tmp_path: Path):
    rng = np.random.default_rng(0)
    truth = rng.random((5, 3, 8, 6))
    rec = rng.random((4, 3, 8, 6))
    assignment = [2, 0, None, 1, 3]
    path = save_grid(rec, truth, assignment, tmp_path / "g" / "grid.png", columns=3)
    pad, chunks = 2, 2
    assert _png_size(path) == (pad + 3 * (6 + pad), pad + 2 * chunks * (8 + pad) + (chunks - 1) * pad)
    assert [p.name for p in path.parent.iterdir()] == ["grid.png"]  # no temporary file left behind

    image = np.asarray(Image.open(path).convert("RGB"))

    def to8(pixels: np.ndarray) -> np.ndarray:
        return np.rint(pixels.transpose(1, 2, 0) * 255).astype(np.uint8)

    assert np.array_equal(image[2:10, 2:8], to8(truth[0]))
    assert np.array_equal(image[12:20, 2:8], to8(rec[2]))  # true image 0's partner, beneath it
    assert np.array_equal(image[12:20, 18:24], np.broadcast_to(np.array(MISSING, np.uint8), (8, 6, 3)))  # image 2: none
    y = pad + 2 * (8 + pad) + pad  # second chunk starts after one extra pad
    assert np.array_equal(image[y : y + 8, 2:8], to8(truth[3]))
    assert np.array_equal(image[y + 10 : y + 18, 2:8], to8(rec[1]))

    gray = grid_image(rec[:, :1], truth[:, :1], assignment, scale=2)
    assert gray.size == (pad + 5 * (12 + pad), pad + 2 * (16 + pad))


def test_grid_refuses_inconsistent_input(tmp_path: Path):
    truth, rec = np.zeros((2, 3, 4, 4)), np.zeros((2, 3, 4, 4))
    for assignment, message in (([0], "pairs 1 images"), ([0, 5], "outside 0..1")):
        with pytest.raises(BenchError, match=message):
            save_grid(rec, truth, assignment, tmp_path / "x.png")
    with pytest.raises(BenchError, match="reconstructions are 5x4"):
        save_grid(np.zeros((2, 3, 5, 4)), truth, [0, 1], tmp_path / "x.png")
    with pytest.raises(BenchError, match="shape"):
        save_grid(np.zeros((2, 4, 4)), truth, [0, 1], tmp_path / "x.png")
    assert not (tmp_path / "x.png").exists()


def test_attack_grid_tiles_run_grids(runs: Path, tmp_path: Path):
    records = load_runs(runs)
    truth = np.full((2, 3, 4, 4), 0.5)
    grids = [r for r in records if r.config["attack"] == "dlg" and r.status == "ok"]
    for r in grids:
        save_grid(truth, truth, [1, 0], run_grid_path(runs, r.run_id))
    one = Image.open(run_grid_path(runs, grids[0].run_id)).size  # (14, 14)

    written = write_plots(tables_for(records), tmp_path / "plots", [load_sweep(runs)])
    attack_grid = tmp_path / "plots" / "grids" / "dlg.png"
    assert attack_grid in written and not (tmp_path / "plots" / "grids" / "ig.png").exists()
    n = len(grids)
    width, height = _png_size(attack_grid)
    assert height == n * (one[1] + 14) + 2 * (n - 1)  # caption bands of 14 px
    assert width > one[0]  # widened so the captions fit

    from_arrays = save_attack_grid([(truth, truth, [0, 1]), (truth[:1], truth[:1], [0])], tmp_path / "arrays.png")
    assert _png_size(from_arrays) == (14, 14 + 2 + 14)  # the wider grid sets the width


def test_plots_follow_the_views_of_the_tables(runs: Path, tmp_path: Path):
    write_leaderboard(runs, format="md", plots_dir=tmp_path / "plots", views=views_for(["lpips"], "batch_size"))
    names = sorted(p.name for p in (tmp_path / "plots").glob("*.png"))
    assert names and all(name.startswith("lpips-vs-B-") for name in names)


def test_columns_are_headed_with_the_repetition_rate_the_runs_achieved():
    """r = 0.9 at B = 8 leaves round(0.8) = 1 label: the runs achieve 0.875, and the column says so."""

    def achieved(record: Record, rate: float) -> Record:
        record.batch = {"repetition_achieved": rate}
        return record

    runs = [
        achieved(make_record("llg", 8, s, metrics={"label_acc": 1.0}, repetition=r, track="label_method"), a)
        for s in (0, 1) for r, a in ((0.0, 0.0), (0.5, 0.5), (0.9, 0.875))
    ]  # fmt: skip
    runs.append(make_record("llg", 8, 2, status="skipped", repetition=0.9, track="label_method"))  # no batch drawn
    (over_r,) = aggregate(runs, rows="label_method", columns="repetition", metric="label_acc")
    assert over_r.headers()[1:4] == ["r=0", "r=0.5", "r=0.875"]
    over_b = aggregate(
        [achieved(make_record("dlg", b, 0, metrics={"psnr": 1.0}, repetition=0.9), a) for b, a in ((8, 0.875), (32, 0.90625), (10, 0.9))]
    )[0]
    assert over_b.headers()[1:4] == ["B=8 (r=0.875)", "B=10", "B=32 (r=0.906)"]
    older = aggregate([make_record("dlg", 8, 0, metrics={"psnr": 1.0}, repetition=0.9)], columns="repetition")[0]
    assert older.headers()[1] == "r=0.9"  # a record without the achieved rate keeps the requested one
