"""The mutation runner itself: stale snippets are reported, never passed; every mutant is well formed."""
from __future__ import annotations

from pathlib import Path

from tests.mutation.run import MUTANTS, ROOT, Mutant, check_snippets


def test_stale_snippets_are_reported(tmp_path):
    (tmp_path / "a.py").write_text("x = 1\ny = 2\ny = 2\n")
    mutants = [Mutant("once", "a.py", "x = 1", "x = 2", ()), Mutant("twice", "a.py", "y = 2", "y = 3", ()),
               Mutant("gone", "a.py", "z = 3", "z = 4", ()), Mutant("nofile", "b.py", "x", "y", ())]
    assert check_snippets(mutants, tmp_path) == {"once": "", "twice": "snippet found 2 times",
                                                 "gone": "snippet found 0 times", "nofile": "file missing"}


def test_mutants_are_many_named_once_and_change_something():
    assert len(MUTANTS) >= 25
    assert len({m.name for m in MUTANTS}) == len(MUTANTS)
    for m in MUTANTS:
        assert m.find != m.replace and m.tests, m.name
        for target in m.tests:
            assert (ROOT / target.split("::")[0]).is_file(), f"{m.name}: no test file {target}"


def test_runner_is_wired_to_make():
    assert "tests.mutation.run" in Path(ROOT / "Makefile").read_text()
