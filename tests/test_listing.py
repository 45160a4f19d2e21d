"""The listing index (bench/listing.json) agrees with the registrations, so `bench ls` cannot drift."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from bench.listing import HEADERS, INDEX_FILE, LISTS, rows

ROOT = Path(__file__).resolve().parents[1]
STALE = "bench/listing.json disagrees with the registrations: run `python -m bench.listing`"


def _registered() -> dict[str, list[list[str]]]:
    """The index as the registrations give it, built in a fresh interpreter: tests register probes of
    their own in this one."""
    code = "import json\nfrom bench.listing import build_index\nprint(json.dumps(build_index()))"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_index_agrees_with_the_registrations():
    registered, indexed = _registered(), json.loads(INDEX_FILE.read_text())
    assert set(indexed) == set(registered) == set(LISTS), STALE
    for what in LISTS:
        assert {r[0]: r[1:] for r in indexed[what]} == {r[0]: r[1:] for r in registered[what]}, f"{what}: {STALE}"
        assert indexed[what] == registered[what], f"{what} (order): {STALE}"


def test_index_rows_match_their_headers_and_the_live_registries():
    from bench.attack import ATTACKS
    from bench.labels import LABELS
    from bench.plugins import loaded_plugins

    for what in LISTS:
        assert rows(what) and all(len(row) == len(HEADERS[what]) for row in rows(what)), what
    # a direct look at two registries in this interpreter (probes aside): same names, same descriptions
    for what, registry in (("attacks", ATTACKS), ("labels", LABELS)):
        indexed = {name: description for name, description, *_ in rows(what)}
        assert all(registry.get(name).description == description for name, description in indexed.items())
        from_plugins = {name for plugin in loaded_plugins() for name in plugin.added.get(what, ())}
        built_in = {e.name for e in registry.entries() if e.obj.__module__.split(".")[0] != "tests"} - from_plugins
        assert built_in <= set(indexed)
