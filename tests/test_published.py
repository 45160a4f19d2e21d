"""Published tables equal a fresh rendering of the records they were rendered from."""

from pathlib import Path

import pytest

from bench.leaderboard import write_leaderboard
from bench.leaderboard.claims import render_claims

BOARD = Path(__file__).resolve().parents[1] / "leaderboard"
PUBLISHED = [
    ("quick.md", "records/quick", "md"),
    ("cpu-convnet.md", "records/cpu-convnet", "md"),
    ("cpu-convnet.tex", "records/cpu-convnet", "latex"),
    ("labels-resnet50.md", "records/labels-resnet50", "md"),
]


@pytest.mark.parametrize("table, records, fmt", PUBLISHED)
def test_published_table_matches_its_records(table, records, fmt):
    assert write_leaderboard(BOARD / records, None, fmt) == (BOARD / table).read_text()


def test_published_claims_match_their_records():
    assert render_claims(BOARD) == (BOARD / "claims.md").read_text()
