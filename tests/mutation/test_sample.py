"""The sampled mutation run (tests.mutation.sample): its module map, sample, equivalents list, report."""
from __future__ import annotations

import shlex
from pathlib import Path

import pytest

pytest.importorskip("cosmic_ray", reason="the sampled mutation run uses cosmic-ray")

from tests.mutation import sample as S


def test_every_module_and_test_target_exists():
    for module, targets in S.MODULES.items():
        assert (S.ROOT / module).is_file(), f"{module} moved: update MODULES"
        args = shlex.split(targets)
        files = [a.split("::")[0] for i, a in enumerate(args) if not a.startswith("-") and (i == 0 or args[i - 1] != "-k")]
        assert files, module
        for f in files:
            assert (S.ROOT / f).is_file(), f"{module}: no test file {f}"


def test_sample_is_fixed_by_the_seed_and_differs_by_module(tmp_path):
    items = S.enumerate_mutants("search_spaces/domains.py", tmp_path / "s.sqlite", S.ROOT)
    assert len(items) > 50
    ids = lambda ws: [(w.mutations[0].operator_name, w.mutations[0].occurrence) for w in ws]  # noqa: E731
    a = S.sample(items, 10, S.SEED, "search_spaces/domains.py")
    again = S.enumerate_mutants("search_spaces/domains.py", tmp_path / "t.sqlite", S.ROOT)
    assert ids(a) == ids(S.sample(again, 10, S.SEED, "search_spaces/domains.py"))  # job ids differ, the sample not
    assert ids(a) != ids(S.sample(items, 10, S.SEED + 1, "search_spaces/domains.py"))
    assert len(S.sample(items, None, S.SEED, "x")) == len(items)
    old, new, diff = S.mutated_lines(S.ROOT, a[0].mutations[0])
    assert old != new and diff.startswith("--- search_spaces/domains.py")


def test_equivalents_are_well_formed_and_matched_exactly(tmp_path):
    entries = S.load_equivalents()
    for e in entries:
        assert e["module"] in S.MODULES, e
    f = tmp_path / "eq.toml"
    f.write_text('[[equivalent]]\nmodule = "a.py"\noperator = "core/X"\nline = "x = 1"\nmutated = "x = 2"\n'
                 'reason = "x is never read"\n')
    [e] = S.load_equivalents(f)
    assert S.equivalent_reason([e], "a.py", "core/X", "x = 1", "x = 2") == "x is never read"
    assert S.equivalent_reason([e], "a.py", "core/X", "x = 1", "x = 3") == ""
    f.write_text('[[equivalent]]\nmodule = "a.py"\noperator = "core/X"\nline = "x"\nmutated = "y"\nreason = " "\n')
    with pytest.raises(ValueError, match="no reason"):
        S.load_equivalents(f)


def test_kill_rate_leaves_equivalents_out():
    o = lambda m, r: S.Outcome(m, "j", "op", 0, 1, r)  # noqa: E731
    text, rate = S.table([o("a.py", "killed")] * 9 + [o("a.py", "survived"), o("a.py", "equivalent"),
                                                        o("b.py", "incompetent")])
    assert rate == pytest.approx(0.9) and "a.py" in text and "90%" in text


def test_wired_to_make():
    makefile = Path(S.ROOT / "Makefile").read_text()
    assert "tests.mutation.sample" in makefile and "--full" in makefile
