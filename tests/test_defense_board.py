"""Tables and plots over the client's update settings: synthetic records with known values for two
defenses at two strengths (and local steps), checked cell by cell, column by column, and through the
plots' data and matplotlib axes; then a tiny real sweep through the CLI."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import pytest

from bench.defenses import Defense, parse_defense
from bench.leaderboard import DEFAULT_VIEWS, aggregate, render, with_varied_views, write_leaderboard
from bench.leaderboard.aggregate import GAIN_METRIC, tables_for
from bench.leaderboard.site import write_site
from bench.leaderboard.strength_plots import COSINE_LABEL, strength_figure, strength_plot
from bench.record import Record, run_id, save_record
from bench.scenario import Scenario
from bench.threat import ThreatModel
from bench.update import ClientUpdate

DEFENSES = ["prune(0.9)", "dp(clip=1, sigma=2)", "none", "prune(0.5)", "dp(clip=1, sigma=0.5)"]  # shuffled on purpose
ORDER = ["none", "dp(clip=1, sigma=0.5)", "dp(clip=1, sigma=2)", "prune(ratio=0.5)", "prune(ratio=0.9)"]
EPSILON = {"dp(clip=1, sigma=0.5)": 40.0, "dp(clip=1, sigma=2)": 2.5}  # stated facts, as bench.client records them
COSINE = {"dp(clip=1, sigma=0.5)": (0.30, 0.50), "dp(clip=1, sigma=2)": (0.10, 0.20),
          "prune(ratio=0.5)": (0.95, 0.97), "prune(ratio=0.9)": (0.60, 0.70)}  # fmt: skip  # per seed
FLOOR_PSNR = 10.0


def attack_psnr(attack: str, column: int, seed: int) -> float:
    """A known PSNR for every cell: falls with the column's strength, differs by attack and seed."""
    return 30.0 - 4.0 * column + (2.0 if attack == "ig" else 0.0) + seed


def record(method: str, defense: str, seed: int, psnr: float, steps: int = 1) -> Record:
    update = ClientUpdate(local_steps=steps, defense=parse_defense(defense))
    scenario = Scenario(batch_size=1, seed=seed, model="lenet", image_size=16, bn_mode="eval", threat=ThreatModel(update=update))
    config = {"scenario": scenario.to_dict(), "attack": method, "budget": 5}
    spec = update.defense.spec()
    facts = {}
    if spec in COSINE:
        facts["cosine_to_undefended"] = COSINE[spec][seed]
    if spec in EPSILON:
        facts.update(epsilon=EPSILON[spec], delta=1e-5)
    return Record(
        run_id(config), config, "ok", metrics={"psnr": psnr, GAIN_METRIC: psnr - FLOOR_PSNR}, cost={"wall_s": 1.0},
        environment={"git_commit": "0123456789", "device": "cpu"}, update=facts,
    )


def defense_records() -> list[Record]:
    records = []
    for defense in DEFENSES:
        column = ORDER.index(parse_defense(defense).spec())
        for seed in (0, 1):
            records += [record(a, defense, seed, attack_psnr(a, column, seed)) for a in ("dlg", "ig")]
            records.append(record("prior-mean", defense, seed, FLOOR_PSNR))
    return records


def test_defense_columns_are_ordered_none_first_then_by_kind_and_strength():
    (table,) = aggregate(defense_records(), "attack", "defense", "psnr")
    assert [c.spec() for c in table.columns] == ORDER
    assert table.headers()[1:-2] == ORDER
    assert table.columns[0] == Defense()
    assert "B=1" in table.title and "r=0" in table.title and "prune" not in table.title and "dp" not in table.title


def test_tables_of_one_setting_over_b_follow_the_defense_order():
    """The per-defense tables (columns B) come in the order of the defense columns, whatever the record order."""
    tables = aggregate(defense_records()[::-1], "attack", "batch_size", "psnr")
    assert [t.group.threat.update.defense.spec() for t in tables] == ORDER


def test_one_column_tables_that_another_table_shows_whole_are_left_out():
    # a second setting (32 px) with one defended update only: no table over the defense holds its runs
    lone = [
        Record(r.run_id + "-32", {**r.config, "scenario": {**r.config["scenario"], "image_size": 32}}, r.status,
               r.metrics, r.cost, r.environment, update=r.update)
        for r in defense_records() if r.config["scenario"]["threat"].get("update", {}).get("defense", {}).get("name") == "prune"
        and r.config["scenario"]["threat"]["update"]["defense"]["ratio"] == 0.9
    ]  # fmt: skip
    records = defense_records() + lone
    tables = tables_for(records, with_varied_views(DEFAULT_VIEWS, records))
    over_b = [t for t in tables if t.column_axis == "batch_size"]
    # the 16 px cells over B (one column each) are all cells of its tables over the defense
    assert [(t.group.image_size, t.group.threat.update.defense.spec(), t.metric) for t in over_b] == [
        (32, "prune(ratio=0.9)", "psnr"), (32, "prune(ratio=0.9)", GAIN_METRIC)]  # fmt: skip
    over_defense = [(t.group.image_size, t.metric, len(t.columns)) for t in tables if t.column_axis == "defense"]
    assert over_defense == [(16, "psnr", len(ORDER)), (16, GAIN_METRIC, len(ORDER))]  # the lone column's left out
    # without a view over the defense, every per-defense table over B stays
    assert len(tables_for(defense_records(), DEFAULT_VIEWS)) == len(ORDER)


def test_defense_table_cells_are_the_means_over_seeds():
    (table,) = aggregate(defense_records(), "attack", "defense", "psnr")
    rows = {row.method: row for row in table.rows}
    assert [row.method for row in table.rows] == ["dlg", "ig", "prior-mean"]  # the floor after the attacks
    for attack in ("dlg", "ig"):
        for column, cell in enumerate(rows[attack].cells):
            expected = [attack_psnr(attack, column, s) for s in (0, 1)]
            assert cell.mean == pytest.approx(sum(expected) / 2)
            assert cell.n_ok == 2
    assert all(cell.mean == FLOOR_PSNR for cell in rows["prior-mean"].cells)  # one floor per defense column
    (gain,) = aggregate(defense_records(), "attack", "defense", GAIN_METRIC)
    ig = next(row for row in gain.rows if row.method == "ig")
    assert ig.cells[4].mean == pytest.approx(30.0 - 16.0 + 2.0 + 0.5 - FLOOR_PSNR)


def test_fact_rows_give_epsilon_at_delta_and_the_mean_cosine_per_column():
    (table,) = aggregate(defense_records(), "attack", "defense", "psnr")
    facts = dict(table.fact_rows())
    assert facts["DP budget ε"] == ["–", "40 at δ=1e-05", "2.5 at δ=1e-05", "–", "–"]
    cosines = [f.cosine.mean for f in table.facts]
    expected = [1.0, *(sum(COSINE[spec]) / 2 for spec in ORDER[1:])]
    assert cosines == pytest.approx(expected)  # one value per case, not per attack: three methods, two cases
    assert all(f.cosine.n_values == 2 for f in table.facts)
    assert facts["cosine to undefended update"][3] == table.facts[3].cosine.text(3)
    md = render([table], "md")
    assert "| DP budget ε" in md and "40 at δ=1e-05" in md and "| cosine to undefended update" in md
    latex = render([table], "latex")
    assert r"2.5 at δ=1e-05" in latex


def test_sweep_without_update_facts_keeps_its_tables():
    """Records of a plain sweep carry no update facts: no fact rows, no tables over update settings."""
    plain = [r for r in defense_records() if r.config["scenario"]["threat"].get("update") is None]
    assert with_varied_views(DEFAULT_VIEWS, plain)[:2] == (DEFAULT_VIEWS[0], DEFAULT_VIEWS[0].__class__("attack", GAIN_METRIC, "batch_size"))
    assert all(v.columns != "defense" for v in with_varied_views(DEFAULT_VIEWS, plain))
    (table,) = aggregate(plain, "attack", "batch_size", "psnr")
    assert table.facts == () and table.fact_rows() == []


def test_views_add_tables_over_the_defense_when_the_records_vary_it():
    views = with_varied_views(DEFAULT_VIEWS, defense_records())
    assert [(v.metric, v.columns) for v in views if v.rows == "attack"] == [
        ("psnr", "batch_size"), (GAIN_METRIC, "batch_size"), ("psnr", "defense"), (GAIN_METRIC, "defense"),
    ]


def test_dp_plot_puts_epsilon_on_a_log_axis_with_no_defense_at_infinity():
    (gain,) = aggregate(defense_records(), "attack", "defense", GAIN_METRIC)
    plot = strength_plot(gain, "dp")
    assert plot.log and "ε at δ=1e-05" in plot.x_label
    assert plot.ticks == ((2.5, "2.5"), (40.0, "40"), (100.0, "none (ε=∞)"))  # a decade right of 40
    dlg = next(s for s in plot.series if s.label == "dlg")
    # by increasing epsilon: sigma 2 (column 2), sigma 0.5 (column 1), no defense (column 0)
    assert [p[0] for p in dlg.points] == [2.5, 40.0, 100.0]
    assert [p[1] for p in dlg.points] == pytest.approx([30 - 8 + 0.5 - 10, 30 - 4 + 0.5 - 10, 30 + 0.5 - 10])
    assert [p[2] for p in dlg.points] == pytest.approx([12.706 * 0.5] * 3, rel=1e-3)  # seeds differ by 1 dB
    assert next(s for s in plot.series if s.label.startswith("prior-mean")).reference
    assert [p[0] for p in plot.cosine.points] == [2.5, 40.0, 100.0]
    assert [p[1] for p in plot.cosine.points] == pytest.approx([0.15, 0.40, 1.0])
    figure = strength_figure(plot)
    gain_axes, cosine_axes = figure.axes
    assert gain_axes.get_xscale() == cosine_axes.get_xscale() == "log"
    assert [t.get_text() for t in gain_axes.get_xticklabels()] == ["2.5", "40", "none (ε=∞)"]
    assert cosine_axes.get_ylabel() == COSINE_LABEL and gain_axes.get_ylabel().startswith(GAIN_METRIC)
    drawn = next(c for c in gain_axes.containers if c.get_label() == "dlg")  # errorbar: line, caps, bars
    assert list(drawn.lines[0].get_xdata()) == [2.5, 40.0, 100.0]


def test_prune_plot_puts_the_ratio_on_a_linear_axis_with_no_defense_at_zero():
    (gain,) = aggregate(defense_records(), "attack", "defense", GAIN_METRIC)
    plot = strength_plot(gain, "prune")
    assert not plot.log and plot.ticks == ((0.0, "none (p=0)"), (0.5, "0.5"), (0.9, "0.9"))
    ig = next(s for s in plot.series if s.label == "ig")
    assert [p[1] for p in ig.points] == pytest.approx([22.5, 22.5 - 12, 22.5 - 16])
    assert strength_figure(plot).axes[0].get_xscale() == "linear"


def test_plots_and_site_of_a_defense_sweep(tmp_path: Path):
    runs = tmp_path / "runs"
    for r in defense_records():
        save_record(r, runs)
    text = write_leaderboard(runs, None, "md", tmp_path / "plots")
    assert "| DP budget ε" in text
    names = {p.name for p in (tmp_path / "plots").glob("*.png")}
    assert {n.rsplit("-", 1)[0] for n in names if "-vs-B-" not in n} == {
        "psnr-vs-dp", "psnr-vs-prune", f"{GAIN_METRIC}-vs-dp", f"{GAIN_METRIC}-vs-prune",
    }
    page = (write_site([runs], tmp_path / "site").parent / "runs" / "index.html").read_text()
    assert '<tr class="facts">' in page and "40 at δ=1e-05" in page
    assert f'src="plots/{GAIN_METRIC}-vs-dp-' in page and 'width="1120" height="420"' in page


def test_local_steps_table_has_the_steps_as_columns():
    records = [record("dlg", "none", seed, 20.0 - steps + seed, steps) for steps in (5, 1) for seed in (0, 1)]
    (table,) = aggregate(records, "attack", "local_steps", "psnr")
    assert table.columns == (1.0, 5.0) and table.headers()[1:3] == ["steps=1", "steps=5"]
    assert "FedAvg" not in table.title  # the column's setting is left out of the shared threat model
    assert [c.mean for c in table.rows[0].cells] == pytest.approx([19.5, 15.5])
    views = [(v.metric, v.columns) for v in with_varied_views(DEFAULT_VIEWS, records)]
    assert views[-3:] == [("psnr", "local_steps"), (GAIN_METRIC, "local_steps"), ("label_acc", "repetition")]


@pytest.mark.slow
def test_a_tiny_defense_sweep_renders_its_defense_table(tmp_path: Path):
    """LeNet at 16 px, DLG at a budget of 5, B=1, one seed, no defense, DP and pruning: `bench run` then
    `bench leaderboard` (a cwd of the repository root, as a user runs it)."""
    root = Path(__file__).resolve().parents[1]
    out = tmp_path / "runs"
    run = [
        sys.executable, "-m", "bench", "run", "--attacks", "dlg", "--models", "lenet", "--image-size", "16",
        "--batch-sizes", "1", "--budget", "5", "--bn-mode", "eval", "--seeds", "0", "--no-images",
        "--defenses", "none,dp(clip=1, sigma=0.1),prune(0.5)", "--out", str(out),
    ]  # fmt: skip
    subprocess.run(run, cwd=root, check=True, capture_output=True, text=True)
    board = subprocess.run(
        [sys.executable, "-m", "bench", "leaderboard", "--runs", str(out), "--plots", str(tmp_path / "plots")],
        cwd=root, check=True, capture_output=True, text=True,
    ).stdout
    lines = board.splitlines()
    start = next(i for i, line in enumerate(lines) if " none |" in line and "dp(clip=1, sigma=0.1)" in line)
    header, table = lines[start], lines[start:]  # the first table over defenses (PSNR), not those over B
    assert header.index("none") < header.index("dp(clip=1") < header.index("prune(ratio=0.5)")
    epsilon = next(line for line in table if line.startswith("| DP budget ε"))
    cells = [c.strip() for c in epsilon.strip("|").split("|")]
    assert cells[1] == "–" and cells[2].endswith("at δ=1e-05") and math.isfinite(float(cells[2].split()[0]))
    cosine = next(line for line in table if line.startswith("| cosine to undefended update"))
    assert [c.strip() for c in cosine.strip("|").split("|")][1] == "1.000 ± –"
    assert list((tmp_path / "plots").glob(f"{GAIN_METRIC}-vs-dp-*.png"))


def test_label_methods_get_tables_and_plots_over_the_defense(tmp_path: Path):
    records = []
    for defense, acc in (("none", 1.0), ("prune(0.9)", 0.5), ("sign", 0.25)):
        scenario = Scenario(batch_size=4, threat=ThreatModel(update=ClientUpdate(defense=parse_defense(defense))))
        config = {"scenario": scenario.to_dict(), "label_method": "llg"}
        records.append(Record(run_id(config), config, "ok", metrics={"label_acc": acc}, environment={"device": "cpu"}))
    runs = tmp_path / "runs"
    for r in records:
        save_record(r, runs)
    views = with_varied_views(DEFAULT_VIEWS, records)
    assert [(v.rows, v.columns) for v in views][-1] == ("label_method", "defense")
    (table,) = aggregate(records, "label_method", "defense", "label_acc")
    assert [c.spec() for c in table.columns] == ["none", "prune(ratio=0.9)", "sign"]
    assert [c.mean for c in table.rows[0].cells] == [1.0, 0.5, 0.25]
    sign = strength_plot(table, "sign")  # no strength parameter: beside no defense, on a categorical axis
    assert sign.ticks == ((0.0, "none"), (1.0, "sign")) and sign.series[0].points == ((0.0, 1.0, 0.0), (1.0, 0.25, 0.0))
    write_leaderboard(runs, None, "md", tmp_path / "plots")
    assert {p.name.rsplit("-", 1)[0] for p in (tmp_path / "plots").glob("*-vs-*.png")} >= {"label_acc-vs-prune", "label_acc-vs-sign"}


def test_a_case_counts_once_with_the_facts_of_the_record_that_carries_them():
    """A run skipped before its case was built has no update facts; the case keeps the other run's."""
    ok = record("dlg", "prune(0.5)", 0, 20.0)
    skipped = Record(
        run_id({**ok.config, "attack": "idlg"}), {**ok.config, "attack": "idlg"}, "skipped",
        environment={"device": "cpu"}, error="skipped on purpose",
    )  # fmt: skip
    for order in ([ok, skipped], [skipped, ok]):
        (table,) = aggregate(order, "attack", "batch_size", "psnr")
        assert table.facts[0].cosine.values == (COSINE["prune(ratio=0.5)"][0],)
