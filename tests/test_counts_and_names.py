"""One validation of names and counts before anything starts (issue 24, case 4): every row is
exit 2 with its message, no traceback, no store, Ray not started, no sweep folder."""
from __future__ import annotations

import time

import pytest
from refusal import assert_refused


@pytest.mark.parametrize("argv, fragments", [
    (["run", "edge-data-per-class", "--until-decided", "--max-seeds", "0"], ["--max-seeds 0 is below"]),
    (["run", "edge-data-per-class", "--until-decided", "--max-seeds", str(10 ** 20)], ["--max-seeds", "out of range"]),
    (["run", "edge-data-per-class", "--until-decided", "--max-seeds", "5000"], ["more than the limit of 10,000", "--yes"]),
    (["run", "edge-data-per-class", "--smoke", "--name", "ok\n"], ["--name 'ok\\n' must be"]),
    (["run", "edge-data-per-class", "--smoke", "--name", "a'b\"c"], ["must be letters"]),
    (["run", "edge-data-per-class", "--smoke", "--name", "caf\udce9"], ["must be letters"]),
])
def test_counts_and_names_refused_before_anything_starts(argv, fragments, tmp_path, capsys):
    assert_refused(argv, fragments, tmp_path, capsys)


@pytest.mark.parametrize("name", ["ok\n", "a'b", "caf\udce9", "../x"])
def test_resume_names_checked_whole(name, tmp_path, capsys):
    from cluster.cli import main

    assert main(["resume", name, "--storage-path", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert f"sweep name {name!r} must be" in err and "Traceback" not in err


def test_sixty_thousand_sets_are_linear():
    from cluster.cli import build_parser, parse_args  # parse_args lives in cluster.infra.argv
    from cluster.planning.values import parse_sets

    parser = build_parser()

    def cost(n: int) -> float:
        argv = ["run", "edge-data-per-class"] + [a for i in range(n) for a in ("--set", f"k{i}={i}")]
        t = time.perf_counter()
        args = parse_args(parser, argv)
        assert len(parse_sets(args.sets)) == n
        return time.perf_counter() - t

    small, large = cost(6_000), cost(60_000)
    assert large < 30 * max(small, 1e-3), (small, large)  # 10x the flags, not 100x the time


@pytest.mark.parametrize("content, needle", [
    ("{not json", "not JSON"),
    ('{"study": "lab-offline"}', "'entries' missing"),
    ('{"study": "lab-offline", "entries": [{"experiment": "x", "sweep": "../../etc"}]}', "not a study entry"),
    ('{"study": "lab-offline", "entries": [{"experiment": "x", "sweep": "s", "bogus": 1}]}', "not a study entry"),
    ("[]", "not an object"),
])
def test_damaged_study_json_names_the_path_and_what_to_do(tmp_path, capsys, content, needle):
    from cluster.cli import main

    state = tmp_path / "rr" / "st" / "study.json"
    state.parent.mkdir(parents=True)
    state.write_text(content)
    code = main(["study", "lab-offline", "--name", "st", "--storage-path", str(tmp_path / "rr"),
                 "--tracking-uri", f"sqlite:///{tmp_path}/m.db"])
    err = capsys.readouterr().err
    assert code == 2 and needle in err and str(state) in err and "pick another --name" in err, err
    assert "Traceback" not in err and not (tmp_path / "m.db").exists()
