"""One table cell: the runs of one (row, column), their mean and 95% confidence interval over seeds.

The interval is Student's t with n - 1 degrees of freedom: mean ± t_{0.975, n-1} * s / sqrt(n), s the
sample standard deviation. With one value there is no interval, shown as "± –".

Above the floor: an attack cell also holds each run's `psnr_gain` (its PSNR minus the stronger prior
floor's on the same case, so the comparison is paired by case). The cell is significantly above the floor
when the 95% interval of the mean gain lies entirely above 0 (a one-sided paired t-test at 2.5%); a cell
needs at least two seeds for that, and a run without a value (failed) counts against it through n_values.

Example:
    >>> CellStats(values=(1.0, 2.0, 3.0), n_ok=3).text(2)
    '2.00 ± 2.48'
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass

NO_INTERVAL = "–"
ABOVE_FLOOR_MARK = "*"


def t_quantile(n: int) -> float:
    """t_{0.975, n-1}: the two-sided 95% quantile for a mean of n values (n >= 2)."""
    from scipy.stats import t as student_t  # on first use: scipy.stats is slow to import

    return float(student_t.ppf(0.975, n - 1))


def mean_ci95(values: tuple[float, ...] | list[float]) -> tuple[float | None, float | None]:
    """(mean, half-width of the 95% CI); (None, None) without values and (mean, None) for one value."""
    if not values:
        return None, None
    ordered = sorted(values)  # the same numbers in any record order give the same bits
    mean = math.fsum(ordered) / len(ordered)
    if len(ordered) == 1:
        return mean, None
    return mean, t_quantile(len(ordered)) * statistics.stdev(ordered) / math.sqrt(len(ordered))


def fixed(value: float, digits: int) -> str:
    """Fixed-point text without a negative zero (a tiny negative mean must not print as -0.00)."""
    text = f"{value:.{digits}f}"
    return text[1:] if text.startswith("-") and float(text) == 0 else text


@dataclass(frozen=True)
class CellStats:
    """The runs of one cell. Failed and skipped runs count in n_total; `values` come from ok runs only.

    An ok run without the metric (e.g. LPIPS unavailable) counts in n_ok and n_total but gives no value.
    `run_ids` names every run of the cell, whatever its status, so each number can be traced to records.
    """

    values: tuple[float, ...] = ()
    n_ok: int = 0
    n_failed: int = 0
    n_skipped: int = 0
    run_ids: tuple[str, ...] = ()
    gains: tuple[float, ...] = ()  # psnr_gain of the runs that have one (attack cells of recent records)

    @property
    def n_total(self) -> int:
        return self.n_ok + self.n_failed + self.n_skipped

    @property
    def n_values(self) -> int:
        return len(self.values)

    @property
    def mean(self) -> float | None:
        return mean_ci95(self.values)[0]

    @property
    def ci95(self) -> float | None:
        return mean_ci95(self.values)[1]

    @property
    def gain_mean(self) -> float | None:
        return mean_ci95(self.gains)[0]

    @property
    def gain_ci95(self) -> float | None:
        return mean_ci95(self.gains)[1]

    @property
    def above_floor(self) -> bool | None:
        """Whether the gain's 95% CI lies above 0; None when the runs carry no gain (label track, old records).

        Every run of the cell must have given a gain: a failed seed leaves the claim unproven (False).
        """
        if not self.gains:
            return None
        mean, ci = mean_ci95(self.gains)
        return ci is not None and len(self.gains) == self.n_total and mean - ci > 0

    def text(self, digits: int, mark_floor: bool = False) -> str:
        """'23.10 ± 0.40', '23.10 ± 0.40 (2/3)' when some runs gave no value, 'skipped', 'failed (0/3)';
        with `mark_floor`, '23.10 ± 0.40 *' when the cell is significantly above the prior floor."""
        if self.n_total == 0:
            return ""
        count = f"({self.n_values}/{self.n_total})"
        if not self.values:
            if self.n_skipped == self.n_total:
                return "skipped"
            return f"failed {count}" if self.n_failed else f"n/a {count}"
        mean, ci = mean_ci95(self.values)
        text = f"{fixed(mean, digits)} ± {NO_INTERVAL if ci is None else fixed(ci, digits)}"
        text = text if self.n_values == self.n_total else f"{text} {count}"
        return f"{text} {ABOVE_FLOOR_MARK}" if mark_floor and self.above_floor else text
