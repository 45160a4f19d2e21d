"""The static site: every link and image resolves inside the site, the pages show the aggregated tables
(the same cells as every other format, each row traced to its records), the reconstructions are the
best, median and worst runs, floors and marks render, output is deterministic and a folder that is not a
site is never touched."""

from __future__ import annotations

from collections import Counter
from html.parser import HTMLParser
from pathlib import Path
from typing import NamedTuple
from urllib.parse import urlsplit

import numpy as np
import pytest
from tests.test_leaderboard import make_record  # the leaderboard tests' record factory

from bench.cli import main
from bench.errors import BenchError
from bench.grid import save_grid
from bench.leaderboard import load_sweep, load_sweeps, plot_name, tables_for, with_varied_views, write_leaderboard
from bench.leaderboard.aggregate import DEFAULT_VIEWS
from bench.leaderboard.plots import claims_for
from bench.leaderboard.site import MANIFEST, build_site, showcase, write_site
from bench.leaderboard.site import pages as site_pages
from bench.metrics.catalog import METRICS, Metric
from bench.record import save_record
from bench.registry import Entry

class Cell(NamedTuple):
    tag: str
    attrs: dict
    text: str
    links: list[str]


class Page(HTMLParser):
    """A page's links, and per board (table section) its rows, title and claim lines."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.links: list[str] = []
        self.rows: dict[str, list[tuple[dict, list[Cell]]]] = {}
        self.titles: dict[str, str] = {}
        self.claims: dict[str, list[str]] = {}
        self.marks = 0
        self._board = ""
        self._row: tuple[dict, list[Cell]] | None = None
        self._cell: Cell | None = None
        self._text: list[str] | None = None  # an h3 or a claim line being read
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        links = [attrs[key] for key in ("href", "src") if key in attrs]
        self.links += links
        if tag == "section":  # a board (one table), or a section holding boards or images
            self._board = attrs["id"] if "board" in attrs.get("class", "") else ""
        elif tag == "tr":
            self._row = (attrs, [])
        elif tag in ("td", "th") and self._row is not None:
            self._cell = Cell(tag, attrs, "", [])
        elif tag in ("h3", "p") and self._board and (tag == "h3" or attrs.get("class") == "claim"):
            self._text = [tag]
        elif tag == "span" and attrs.get("class") == "mark" and self._cell is not None:
            self.marks += 1
        if self._cell is not None:
            self._cell.links.extend(links)

    def handle_data(self, data):
        if self._cell is not None:
            self._cell = self._cell._replace(text=self._cell.text + data)
        if self._text is not None:
            self._text.append(data)

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None and self._row is not None:
            self._row[1].append(self._cell._replace(text=" ".join(self._cell.text.split())))
            self._cell = None
        elif tag == "tr" and self._row is not None:
            self.rows.setdefault(self._board, []).append(self._row)
            self._row = None
        elif self._text is not None and tag == self._text[0]:
            text = "".join(self._text[1:]).strip()
            if tag == "h3":
                self.titles[self._board] = text
            else:
                self.claims.setdefault(self._board, []).append(text)
            self._text = None


def _grid(folder: Path, run_id: str, shade: float) -> None:
    images = np.full((1, 3, 4, 4), shade)
    save_grid(images, images, [0], folder / f"{run_id}.png")


def _attack_sweep(folder: Path) -> Path:
    """dlg: PSNR 1, 2, 3 at B=4, 5 and a failure at B=8; prior-grey (a floor) at B=4; ig: 7 at B=4, a skip
    at B=8. Every ok run has a grid but dlg's B=8 run."""
    records = [
        *(make_record("dlg", 4, seed, metrics={"psnr": v, "ssim": v / 10}) for seed, v in enumerate([1.0, 2.0, 3.0])),
        make_record("dlg", 8, 0, metrics={"psnr": 5.0}),
        make_record("dlg", 8, 1, status="failed"),
        *(make_record("prior-grey", 4, seed, metrics={"psnr": v}) for seed, v in enumerate([4.0, 4.5])),
        make_record("ig", 4, 0, metrics={"psnr": 7.0}),
        make_record("ig", 8, 0, status="skipped"),
    ]
    for record in records:
        save_record(record, folder)
        if record.status == "ok" and record.config["scenario"]["batch_size"] == 4:
            _grid(folder, record.run_id, record.metrics["psnr"] / 10)
    return folder


def _label_sweep(folder: Path) -> Path:
    for seed in (0, 1):
        for r in (0.0, 0.5):
            save_record(make_record("llg", 8, seed, metrics={"label_acc": 0.5 + seed / 10 - r / 2}, repetition=r,
                                    track="label_method"), folder)  # fmt: skip
    return folder


@pytest.fixture
def sweeps(tmp_path: Path) -> list[Path]:
    return [_attack_sweep(tmp_path / "runs" / "alpha"), _label_sweep(tmp_path / "runs" / "beta")]


@pytest.fixture
def site(sweeps: list[Path], tmp_path: Path) -> Path:
    write_site(sweeps, tmp_path / "site")
    return tmp_path / "site"


def _files(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def check_links(site: Path) -> None:
    """Every href and src of every page names a file inside the site (no network, nothing absolute), and
    every file of the site is reached from a page or is a page, the style sheet or the script."""
    reached = {"style.css", "site.js"}
    pages = sorted(site.rglob("*.html"))
    assert pages
    for page in pages:
        reached.add(page.relative_to(site).as_posix())
        for link in Page(page.read_text()).links:
            if link.startswith("data:"):
                continue
            parts = urlsplit(link)
            assert not parts.scheme and not parts.netloc and not link.startswith("/"), f"{page}: {link}"
            target = (page.parent / parts.path).resolve()
            assert target.is_relative_to(site.resolve()) and target.is_file(), f"{page}: {link} does not resolve"
            reached.add(target.relative_to(site.resolve()).as_posix())
    assert reached == set(_files(site))


def test_every_link_and_image_resolves_inside_the_site(site: Path):
    assert sorted(p.name for p in site.iterdir()) == ["alpha", "beta", "index.html", MANIFEST, "site.js", "style.css"]
    check_links(site)
    assert (site / MANIFEST).read_text().splitlines() == sorted(_files(site))


def test_link_check_catches_a_missing_file(site: Path):
    next((site / "alpha" / "records").glob("*.json")).unlink()
    with pytest.raises(AssertionError, match="does not resolve"):
        check_links(site)


def test_rendering_is_deterministic_and_ignores_argument_order(sweeps: list[Path], tmp_path: Path):
    write_site(sweeps, tmp_path / "one")
    write_site(list(reversed(sweeps)), tmp_path / "two")
    assert _files(tmp_path / "one") == _files(tmp_path / "two")


def test_records_and_grids_are_byte_copies(site: Path, sweeps: list[Path]):
    alpha = load_sweep(sweeps[0])
    for run_id, path in alpha.files.items():
        assert (site / "alpha" / "records" / f"{run_id}.json").read_bytes() == path.read_bytes()
    for copied in (site / "alpha" / "records").glob("*.png"):
        assert copied.read_bytes() == (sweeps[0] / copied.name).read_bytes()


def test_sweep_page_shows_the_aggregated_tables_and_traces_each_row(site: Path, sweeps: list[Path]):
    alpha = load_sweep(sweeps[0])
    page = Page((site / "alpha" / "index.html").read_text())
    (table,) = tables_for(alpha.records)
    anchor = plot_name(table).removesuffix(".png")
    assert page.titles[anchor] == table.title
    rows = page.rows[anchor][1:]  # the first row is the header
    n = len(table.columns)
    assert len(rows) == len(table.rows) == 3
    for (attrs, cells), row, texts in zip(rows, table.rows, table.text_rows()):
        assert [c.text for c in cells[: 1 + n]] == texts[: 1 + n]  # label and cells, as Markdown shows them
        assert [c.text for c in cells[1 + n + 3 : 1 + n + 5]] == texts[-2:]  # s/run and total h
        ok, failed, skipped = (sum(getattr(c, k) for c in row.cells) for k in ("n_ok", "n_failed", "n_skipped"))
        counts = [f"{ok}/{ok + failed + skipped}", str(failed), str(skipped)]
        assert [c.text for c in cells[1 + n : 1 + n + 3]] == counts
        assert ("floor" in attrs.get("class", "")) == (row.method == "prior-grey")
        # the row's records: every run of its cells (failed and skipped ones too), each one file
        runs = sorted(run_id for cell in row.cells for run_id in cell.run_ids)
        assert sorted(link.removeprefix("records/").removesuffix(".json") for link in cells[-1].links) == runs
        assert {r.run_id for r in alpha.records if r.config["attack"] == row.method} == set(runs)
    assert "prior-only floors" in (site / "alpha" / "index.html").read_text()


def test_index_counts_every_run_of_each_sweep(site: Path, sweeps: list[Path]):
    page = Page((site / "index.html").read_text())
    (_, header), *rows = page.rows[""]
    assert [c[2] for c in header][:6] == ["sweep", "setting", "runs", "ok / total", "failed", "skipped"]
    for sweep, (_, cells) in zip(load_sweeps(sweeps), rows):
        status = Counter(r.status for r in sweep.records)
        n = len(sweep.records)
        assert [c[2] for c in cells[:1] + cells[2:6]] == [sweep.name, str(n), f"{status['ok']}/{n}",
                                                           str(status["failed"]), str(status["skipped"])]  # fmt: skip
    assert "B = 4, 8 · r = 0" in rows[0][1][1][2] and "label recovery" in rows[1][1][1][2]


def test_showcase_is_best_median_and_worst(sweeps: list[Path]):
    values = [1.0, 3.0, 2.0, 5.0]
    runs = [make_record("dlg", 4, seed, metrics={"psnr": v, "lpips": v / 10}) for seed, v in enumerate(values)]
    runs += [make_record("dlg", 8, 0, metrics={"psnr": 9.0}), make_record("dlg", 8, 1, status="failed")]
    with_grid = {r.run_id for r in runs[:4]}  # the 9 dB run has no grid: it cannot be shown
    picks = showcase(runs, "psnr", with_grid.__contains__)
    assert [(p.roles, p.value) for p in picks] == [(("best",), 5.0), (("median",), 3.0), (("worst",), 1.0)]
    picks = showcase(runs, "lpips", with_grid.__contains__)  # lower is better
    assert [(p.roles, p.value) for p in picks] == [(("best",), 0.1), (("median",), 0.2), (("worst",), 0.5)]
    two = showcase(runs[:2], "psnr", with_grid.__contains__)
    assert [(p.roles, p.value) for p in two] == [(("best", "median"), 3.0), (("worst",), 1.0)]
    assert [p.roles for p in showcase(runs[:1], "psnr", with_grid.__contains__)] == [("best", "median", "worst")]
    assert showcase(runs, "psnr", lambda run_id: False) == []


def test_sweep_page_shows_each_attacks_picks_with_their_numbers(site: Path, sweeps: list[Path]):
    alpha = load_sweep(sweeps[0])
    text = (site / "alpha" / "index.html").read_text()
    shown = sorted(p.stem for p in (site / "alpha" / "records").glob("*.png"))
    expected = sorted(
        p.record.run_id
        for attack in ("dlg", "ig", "prior-grey")
        for p in showcase([r for r in alpha.records if r.config["attack"] == attack], "psnr",
                          lambda run_id: alpha.grid(run_id) is not None)  # fmt: skip
    )
    assert shown == expected and len(shown) == 3 + 1 + 2  # dlg's 5 dB run at B=8 has no grid
    assert "psnr ↑ 3.00 dB · ssim ↑ 0.300" in text and "<strong>best · median · worst</strong>" in text


def test_marks_render_where_the_aggregation_marks_a_cell(sweeps: list[Path], tmp_path: Path, monkeypatch):
    clean = Page(build_site(load_sweeps(sweeps))["alpha/index.html"].decode())
    assert clean.marks == 0
    monkeypatch.setattr(site_pages, "above_floor", lambda cell: cell.mean is not None and cell.mean > 4.5)
    text = build_site(load_sweeps(sweeps))["alpha/index.html"].decode()
    assert Page(text).marks == 2  # dlg at B=8 (5.0) and ig at B=4 (7.0)
    assert "significantly above the prior floor (its 95% CI clear of it)" in text


@pytest.fixture
def gain_metric(monkeypatch):
    """psnr_gain in the metric catalogue, as the prior floors register it."""
    if "psnr_gain" not in METRICS:
        entry = Entry("psnr_gain", Metric("higher", "dB"), "PSNR above the strongest prior floor")
        monkeypatch.setitem(METRICS._entries, "psnr_gain", entry)


def test_gain_tables_and_plots_when_records_carry_psnr_gain(gain_metric, tmp_path: Path):
    folder = tmp_path / "gain"
    for b, seed in ((4, 0), (4, 1), (8, 0)):
        save_record(make_record("dlg", b, seed, metrics={"psnr": 20.0 + seed, "psnr_gain": 1.0 + seed}), folder)
    records = load_sweep(folder).records
    views = with_varied_views(DEFAULT_VIEWS, records)
    # gain against B (the records vary it), not against r (they do not); attack views first
    assert [(v.metric, v.columns) for v in views] == [
        ("psnr", "batch_size"), ("psnr_gain", "batch_size"), ("label_acc", "repetition"),
    ]  # fmt: skip
    files = build_site([load_sweep(folder)])
    plots = {name for name in files if "/plots/" in name}
    assert plots == {f"gain/plots/{plot_name(t)}" for t in tables_for(records, views)}
    assert any(name.startswith("gain/plots/psnr_gain-vs-B-") for name in plots)
    assert "psnr_gain ↑ (dB) against batch size B" in files["gain/index.html"].decode()
    assert "psnr_gain ↑ (dB)" in write_leaderboard(folder, format="md")  # every format shows the same tables
    plain = [make_record("dlg", 4, 0, metrics={"psnr": 20.0})]
    assert with_varied_views(DEFAULT_VIEWS, plain) == DEFAULT_VIEWS
    # one batch size (a calibration at B = 1): the gain still has its table against the attack tables' axis
    single = [make_record("dlg", 1, seed, metrics={"psnr": 20.0, "psnr_gain": 1.0}) for seed in (0, 1)]
    assert [(v.metric, v.columns) for v in with_varied_views(DEFAULT_VIEWS, single)][:2] == [
        ("psnr", "batch_size"), ("psnr_gain", "batch_size"),
    ]  # fmt: skip


def test_the_papers_number_is_shown_where_the_table_covers_it(tmp_path: Path):
    folder = tmp_path / "labels"
    for b in (8, 256):
        for r in (0.0, 0.96):
            for method in ("e2egi", "llg"):
                record = make_record(method, b, 0, metrics={"label_acc": 0.5}, repetition=r, track="label_method")
                save_record(record, folder)
    tables = tables_for(load_sweep(folder).records)
    assert [[c.text() for c in claims_for(t)] for t in tables] == [
        [], ["e2egi: label_acc 0.81 at B=256, r=0.96 (Li et al., IEEE JBHI 2022 (E2EGI), abstract)"],
    ]  # B=8, then B=256
    page = Page(build_site([load_sweep(folder)])["labels/index.html"].decode())
    claims = {page.titles[board]: lines for board, lines in page.claims.items()}
    assert list(claims) == [tables[1].title]
    assert claims[tables[1].title][0].startswith("★ paper: e2egi: label_acc 0.81")
    without = [t for t in tables_for([r for r in load_sweep(folder).records if r.config["label_method"] == "llg"])]
    assert all(claims_for(t) == [] for t in without)  # no e2egi row, nothing to compare with


def test_site_folder_that_is_not_a_site_is_left_alone(sweeps: list[Path], tmp_path: Path):
    target = tmp_path / "mine"
    target.mkdir()
    (target / "notes.txt").write_text("keep me")
    with pytest.raises(BenchError, match="notes.txt, which no earlier rendering"):
        write_site(sweeps, target)
    assert [p.name for p in target.iterdir()] == ["notes.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine", "runs"]  # nothing staged, nothing left over
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(BenchError, match="is a file"):
        write_site(sweeps, blocker)


def test_a_site_is_replaced_whole_but_a_users_file_in_it_stops_the_rendering(sweeps: list[Path], tmp_path: Path):
    out = tmp_path / "site"
    write_site(sweeps, out)
    write_site(sweeps[:1], out)  # beta is gone from the new rendering, and from the folder
    assert not (out / "beta").exists() and "beta" not in (out / MANIFEST).read_text()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["runs", "site"]
    (out / "alpha" / "mine.txt").write_text("keep me")
    with pytest.raises(BenchError, match="alpha/mine.txt"):
        write_site(sweeps, out)
    assert (out / "alpha" / "mine.txt").read_text() == "keep me" and not (out / "beta").exists()


def test_cli_writes_a_site_and_refuses_with_one_line(sweeps: list[Path], tmp_path: Path, capsys):
    assert main(["leaderboard", "--runs", *map(str, sweeps), "--site", str(tmp_path / "site")]) == 0
    assert capsys.readouterr().out == f"site: {tmp_path / 'site' / 'index.html'}\n"
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "x").write_text("")
    assert main(["leaderboard", "--runs", str(sweeps[0]), "--site", str(tmp_path / "other")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: --site")
    same_name = _attack_sweep(tmp_path / "elsewhere" / "alpha")
    assert main(["leaderboard", "--runs", str(sweeps[0]), str(same_name), "--site", str(tmp_path / "s2")]) == 2
    assert "two runs folders are named 'alpha'" in capsys.readouterr().err and not (tmp_path / "s2").exists()


def test_several_runs_folders_make_one_set_of_tables(sweeps: list[Path], tmp_path: Path):
    both = write_leaderboard(sweeps, format="md")
    assert "attack (psnr ↑)" in both and "label method (label_acc ↑)" in both
    copy = tmp_path / "copy"
    _attack_sweep(copy)
    with pytest.raises(BenchError, match="recorded twice"):
        write_leaderboard([sweeps[0], copy], format="md")
