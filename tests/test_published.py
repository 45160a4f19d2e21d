"""Published tables equal a fresh rendering of the records they were rendered from."""

from pathlib import Path

import pytest

from bench.leaderboard import views_for, write_leaderboard

BOARD = Path(__file__).resolve().parents[1] / "leaderboard"
GAIN_AND_PSNR = ("psnr_gain", "psnr")
# (table, records, format, attack-table metrics: None for the default views)
PUBLISHED = [
    ("calibration.md", "records/calibration", "md", GAIN_AND_PSNR),
    ("cpu-images.md", "records/cpu-images", "md", GAIN_AND_PSNR),
    ("cpu-images.tex", "records/cpu-images", "latex", GAIN_AND_PSNR),
    ("labels-resnet50.md", "records/labels-resnet50", "md", None),
]


@pytest.mark.parametrize("table, records, fmt, metrics", PUBLISHED)
def test_published_table_matches_its_records(table, records, fmt, metrics):
    views = views_for(list(metrics) if metrics else None)
    assert write_leaderboard(BOARD / records, None, fmt, views=views) == (BOARD / table).read_text()


def test_every_published_table_is_checked():
    tables = {p.name for p in BOARD.glob("*.md") if p.name != "README.md"} | {p.name for p in BOARD.glob("*.tex")}
    assert tables == {table for table, *_ in PUBLISHED}
