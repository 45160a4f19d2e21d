"""Progress bars: one over the sweep, one per run (iterations, current loss, ETA).

The bars are drawn only on a terminal. When standard output is not one (CI logs, pipes, files), each
finished run is one line there instead (bench.report.run_line), written as soon as the run ends.
"""

from __future__ import annotations

import sys
from typing import Callable, TextIO

from tqdm import tqdm

from bench.record import Record
from bench.report import run_line


class Progress:
    """`stream` draws the bars (when `enabled`; by default when it is a terminal); `lines`, when given,
    receives one line per finished run (`bench run` gives standard output when it is not a terminal)."""

    def __init__(self, total: int, stream: TextIO = sys.stderr, enabled: bool | None = None, lines: TextIO | None = None) -> None:
        self.enabled = stream.isatty() if enabled is None else enabled
        self.stream = stream
        self.lines = lines
        self.total = total
        self.sweep = tqdm(total=total, desc="sweep", unit="run", file=stream, disable=not self.enabled, position=0)
        self.run: tqdm | None = None
        self.counts = {"ok": 0, "failed": 0, "skipped": 0, "resumed": 0}

    def run_callback(self, cell) -> Callable[[int, float], None]:
        total = cell.budget
        self.run = tqdm(
            total=total, desc=cell.method, unit="it", file=self.stream, disable=not self.enabled,
            position=1, leave=False,
        )

        def update(iteration: int, loss: float) -> None:
            assert self.run is not None
            self.run.update(iteration - self.run.n)
            self.run.set_postfix(loss=f"{loss:.4g}", refresh=False)

        return update

    def end_run(self) -> None:
        if self.run is not None:
            self.run.close()
            self.run = None

    def cell_done(self, record: Record, resumed: bool = False) -> None:
        self.counts["resumed" if resumed else record.status] += 1
        self.sweep.set_postfix({k: v for k, v in self.counts.items() if v}, refresh=False)
        self.sweep.update(1)
        if self.lines is not None:
            print(run_line(record, self.done, self.total, reused=resumed), file=self.lines, flush=True)

    @property
    def done(self) -> int:
        """Runs finished so far (reused ones included)."""
        return sum(self.counts.values())

    def close(self) -> None:
        self.end_run()
        self.sweep.close()
