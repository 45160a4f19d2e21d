"""Published tables and the published site equal a fresh rendering of the records they were rendered from."""

import shutil
import subprocess
from pathlib import Path

import matplotlib
import pytest
from PIL import Image
from tests.test_site import check_links

from bench.leaderboard import write_leaderboard
from bench.leaderboard.claims import render_claims
from bench.leaderboard.site import write_site
from bench.leaderboard.tuning import tuning_comparison

BOARD = Path(__file__).resolve().parents[1] / "leaderboard"
PUBLISHED = [
    ("calibration.md", "records/calibration", "md"),
    ("cpu-images.md", "records/cpu-images", "md"),
    ("cpu-images.tex", "records/cpu-images", "latex"),
    ("labels-resnet50.md", "records/labels-resnet50", "md"),
    ("labels-resnet50-n10.md", "records/labels-resnet50-n10", "md"),
    ("labels-resnet50-n10-e2egi-head.md", "records/labels-resnet50-n10-e2egi-head", "md"),
    ("labels-resnet18-trained-n10.md", "records/labels-resnet18-trained-n10", "md"),
    ("labels-resnet18-trained-n23.md", "records/labels-resnet18-trained-n23", "md"),
    ("defenses-cpu.md", "records/defenses-cpu", "md"),
]
SITE_SWEEPS = [
    "records/cpu-images", "records/calibration", "records/labels-resnet50", "records/labels-resnet50-n10",
    "records/labels-resnet50-n10-e2egi-head", "records/labels-resnet18-trained-n10",
    "records/labels-resnet18-trained-n23", "records/defenses-cpu",
]


@pytest.mark.parametrize("table, records, fmt", PUBLISHED)
def test_published_table_matches_its_records(table, records, fmt):
    assert write_leaderboard(BOARD / records, None, fmt) == (BOARD / table).read_text()


# default against tuned: (table, runs folders holding both, the tuning's tuned.yaml)
TUNED = [
    ("cpu-images-lenet-tuned.md", ["records/cpu-images/lenet", "records/cpu-images-tuned/lenet"], "tuning/cpu-images-lenet/tuned.yaml"),
    ("cpu-images-convnet-tuned.md", ["records/cpu-images/convnet", "records/cpu-images-tuned/convnet"], "tuning/cpu-images-convnet/tuned.yaml"),
]


@pytest.mark.parametrize("table, runs, tuned", TUNED)
def test_published_tuning_table_matches_its_records(table, runs, tuned):
    assert tuning_comparison([BOARD / r for r in runs], BOARD / tuned) == (BOARD / table).read_text()


def test_every_published_table_is_checked():
    tables = {p.name for p in BOARD.glob("*.md")} | {p.name for p in BOARD.glob("*.tex")}
    checked = {table for table, *_ in PUBLISHED} | {table for table, *_ in TUNED}
    assert tables - {"README.md", "claims.md"} == checked


def _files(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _drawn_by(path: Path) -> str:
    with Image.open(path) as image:
        return image.text.get("Software", "")


def test_published_site_matches_its_records(tmp_path: Path):
    """Every page, style sheet, script, record and image grid byte for byte. A plot is compared byte for
    byte when this matplotlib drew the published one (its PNG says which version did); another version
    may place text a pixel apart, so then only its size is compared."""
    write_site([BOARD / sweep for sweep in SITE_SWEEPS], tmp_path / "site")
    fresh, published = _files(tmp_path / "site"), _files(BOARD / "site")
    assert sorted(fresh) == sorted(published)
    this_version = f"Matplotlib version{matplotlib.__version__},"
    for name, data in fresh.items():
        if "/plots/" in name and not _drawn_by(BOARD / "site" / name).startswith(this_version):
            with Image.open(tmp_path / "site" / name) as new, Image.open(BOARD / "site" / name) as old:
                assert new.size == old.size, f"{name}: {_drawn_by(BOARD / 'site' / name)} vs {this_version}"
            continue
        assert data == published[name], f"leaderboard/site/{name} differs from a fresh rendering"
    check_links(BOARD / "site")


def test_every_file_of_the_published_site_is_committed():
    """A file git ignores (say, under a folder named like an ignored one) would be missing from a clone."""
    if shutil.which("git") is None or not (BOARD.parent / ".git").exists():
        pytest.skip("not a git checkout")
    ignored = subprocess.run(
        ["git", "ls-files", "--others", "--ignored", "--exclude-standard", "--", "leaderboard/site"],
        cwd=BOARD.parent, capture_output=True, text=True, check=True,
    ).stdout.split()
    assert ignored == []


def test_published_claims_match_their_records():
    assert render_claims(BOARD) == (BOARD / "claims.md").read_text()
