"""Tables -> text: GitHub Markdown, LaTeX (booktabs), CSV and HTML. Same tables in, same bytes out.

Markdown, LaTeX and HTML start with one legend line (explaining the mark of cells above the prior floor
when a table carries it); each table has a title line naming its group and
metric, and a footnote line with its run counts, git commits and devices ("commits differ: ..." when the
runs come from more than one). CSV is one row per cell with the group in columns (so it needs no title
lines) and the numbers apart: mean, ci95, n_values, n_ok, n_failed, n_skipped, n_total, and the gain over
the prior floor: gain_mean, gain_ci95, above_floor (empty where the runs carry no gain), and the compute:
the row's FLOPs budget and the column's FLOPs per run (empty where the runs did not count them).

Example:
    >>> print(render(aggregate(records), "md"))
"""

from __future__ import annotations

import csv
import html
import io
from collections.abc import Callable, Sequence

from tabulate import LATEX_ESCAPE_RULES, tabulate

from bench.errors import BenchError
from bench.leaderboard.aggregate import Table, value_text
from bench.leaderboard.stats import ABOVE_FLOOR_MARK, NO_INTERVAL

LEGEND = (
    f"Cells: mean ± 95% CI over seeds (Student t, n-1 dof; ± {NO_INTERVAL} for a single seed); "
    "(k/n): runs that gave a value / all runs, failed and skipped runs included."
)
FLOOR_LEGEND = (
    f"{ABOVE_FLOOR_MARK}: significantly above the prior floor: the 95% CI over seeds of the PSNR gain over the "
    "stronger prior (flat grey or dataset mean image, same case) lies above 0. Rows marked (floor) are those "
    "priors; noise (random start) is where optimisation starts, not a floor."
)
# Applied after escaping, so the inserted "$" and "\" stay LaTeX.
_LATEX_SYMBOLS = {"±": r"$\pm$", "↑": r"$\uparrow$", "↓": r"$\downarrow$", "·": r"$\cdot$", "–": "--"}
CSV_HEADERS = [
    "track", "labels_known", "bn_stats", "batch_size_known", "dataset", "model", "image_size", "fixed_axis",
    "fixed_value", "settings", "metric", "better", "method", "budget", "options", "column_axis", "column_value",
    "mean", "ci95", "n_values", "n_ok", "n_failed", "n_skipped", "n_total", "row_s_per_run",
    "gain_mean", "gain_ci95", "above_floor", "flops_budget", "column_flops",
]


def _grid(table: Table, tablefmt: str) -> str:
    align = ("left", *("right",) * (len(table.headers()) - 1))
    # numbers stay text: tabulate must not re-format "2.00 ± 0.40" or "0.50"
    return tabulate(table.text_rows(), table.headers(), tablefmt=tablefmt, disable_numparse=True, colalign=align)


def _latex_symbols(text: str) -> str:
    for symbol, latex in _LATEX_SYMBOLS.items():
        text = text.replace(symbol, latex)
    return text


def latex_escape(text: str) -> str:
    """Escape LaTeX specials (the rules tabulate applies to cells), then write symbols in math mode."""
    return _latex_symbols("".join(LATEX_ESCAPE_RULES.get(ch, ch) for ch in text))


def legend(tables: Sequence[Table]) -> str:
    """The legend line, with the floor mark explained when a table uses it."""
    return f"{LEGEND} {FLOOR_LEGEND}" if any(t.marks_floor for t in tables) else LEGEND


def render_md(tables: Sequence[Table], legend_text: str | None = None) -> str:
    parts = [legend_text or legend(tables)]
    for table in tables:
        parts += [f"### {table.title}", _grid(table, "github"), table.footnote]
    return "\n\n".join(parts) + "\n"


def render_latex(tables: Sequence[Table], legend_text: str | None = None) -> str:
    parts = [f"% {legend_text or legend(tables)}"]
    for table in tables:
        parts.append("\n".join([
            r"\begin{table}[ht]",
            r"\centering",
            rf"\caption{{{latex_escape(table.title)}}}",
            _latex_symbols(_grid(table, "latex_booktabs")),  # tabulate escaped the cells already
            r"\par\smallskip",
            rf"{{\footnotesize {latex_escape(table.footnote)}}}",
            r"\end{table}",
        ]))
    return "\n\n".join(parts) + "\n"


def render_html(tables: Sequence[Table], legend_text: str | None = None) -> str:
    parts = [f"<p>{html.escape(legend_text or legend(tables))}</p>"]
    for table in tables:
        parts += [
            f"<h3>{html.escape(table.title)}</h3>",
            _grid(table, "html"),  # tabulate's "html" escapes cell text
            f'<p class="footnote">{html.escape(table.footnote)}</p>',
        ]
    return "\n".join(parts) + "\n"


def _number(value: float | None) -> str:
    # 12 significant digits: far below any metric's noise, and free of float noise like 15.699999999999998
    return "" if value is None else f"{value:.12g}"


def _bool(value: bool) -> str:
    return "true" if value else "false"


def render_csv(tables: Sequence[Table], legend_text: str | None = None) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_HEADERS)
    for table in tables:
        g = table.group
        group = [
            g.track, _bool(g.threat.labels_known), g.threat.bn_stats, _bool(g.threat.batch_size_known),
            g.dataset, g.model, g.image_size, ";".join(axis for axis, _ in g.fixed),
            ";".join(f"{value:g}" for _, value in g.fixed), ";".join(g.settings), table.metric, table.better,
        ]
        for row in table.rows:
            for index, (column, cell) in enumerate(zip(table.columns, row.cells)):
                if cell.n_total == 0:
                    continue
                writer.writerow([
                    *group, row.method, "" if row.budget is None else row.budget, row.options, table.column_axis, value_text(column),
                    _number(cell.mean), _number(cell.ci95), cell.n_values, cell.n_ok, cell.n_failed,
                    cell.n_skipped, cell.n_total, _number(row.wall_s_mean),
                    _number(cell.gain_mean), _number(cell.gain_ci95),
                    "" if cell.above_floor is None else _bool(cell.above_floor),
                    "" if row.flops is None else row.flops, table.compute[index] if table.compute else "",
                ])
    return out.getvalue()


RENDERERS: dict[str, Callable[[Sequence[Table], str | None], str]] = {
    "md": render_md,
    "latex": render_latex,
    "csv": render_csv,
    "html": render_html,
}
EXTENSIONS = {"md": "md", "latex": "tex", "csv": "csv", "html": "html"}


def closing_note(text: str, format: str) -> str:
    """A note after every table, in `format` ("" for CSV, which has no place for one)."""
    notes = {
        "md": f"\n{text}\n",
        "latex": f"\n{{\\footnotesize {latex_escape(text)}}}\n",
        "html": f'<p class="footnote">{html.escape(text)}</p>\n',
    }
    return notes.get(format, "")


def check_format(format: str) -> None:
    if format not in RENDERERS:
        raise BenchError(f"unknown table format {format!r}; choose {', '.join(RENDERERS)}")


def render(tables: Sequence[Table], format: str = "md", legend_text: str | None = None) -> str:
    """The tables as one text in `format` ("md", "latex", "csv" or "html"); `legend_text` replaces the legend
    line (tables of another kind than `Table` that quack like one, bench.leaderboard.traces)."""
    check_format(format)
    return RENDERERS[format](tables, legend_text)
