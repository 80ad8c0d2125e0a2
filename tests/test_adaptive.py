"""Adaptive replicates (cluster.flow.adaptive) on fabricated results: no Ray, no training."""
import json

import numpy as np
import pytest

pytest.importorskip("ray", reason="the adaptive searcher is a Ray Tune Searcher")

from analysis.sequential import Design
from cluster.flow.adaptive import FINISHED, AdaptiveSettings, Replicates
from search_spaces.experiment import Hypothesis
from core.errors import ConfigError

CNN, MLP = "simple_cnn/edges", "three_layer_mlp/edges"
CELLS = [{"pairing": p, "data_per_class": d, "lr": 0.01} for p in (CNN, MLP) for d in (10, 30, 100)]
HYPS = (Hypothesis("CNN > MLP at data_per_class=10", CNN, MLP, at={"data_per_class": 10}),
        Hypothesis("CNN > MLP at data_per_class=100", CNN, MLP, at={"data_per_class": 100}))


def outcome(cfg: dict, seed: int) -> float:
    """dpc=10: CNN clearly wins; dpc=100: both sides spread over 40 points with no difference (no
    decision within 9 seeds: stops for futility); dpc=30: no hypothesis."""
    rng = np.random.default_rng(seed * 1000 + CELLS.index(cfg))
    if cfg["data_per_class"] == 10:
        return (0.95 if cfg["pairing"] == CNN else 0.60) + rng.normal(0, 0.01)
    if cfg["data_per_class"] == 100:
        return 0.55 + 0.4 * rng.random()
    return 0.97 + 0.01 * (seed % 3 - 1)


def drive(rep: Replicates, value=outcome, stop_after: int | None = None, fail=lambda cfg, seed: False) -> int:
    """Play Tune: ask for trials two at a time, report results; returns trials run."""
    n, live, counter = 0, [], 0
    while True:
        while len(live) < 2:
            counter += 1
            tid = f"t{counter}-{len(rep.issued)}"
            cfg = rep.next(tid)
            if cfg is None or cfg == FINISHED:
                break
            live.append((tid, cfg))
        if not live:
            assert rep.next("last") == FINISHED
            return n
        tid, cfg = live.pop(0)
        base = {k: v for k, v in cfg.items() if k != "seed"}
        ok = not fail(cfg, cfg["seed"])
        rep.complete(tid, {"val_acc": value(base, cfg["seed"]), "epochs_completed": 5} if ok else None, error=not ok)
        n += 1
        if stop_after and n >= stop_after:
            return n


def seeds_per_cell(rep: Replicates) -> dict:
    return {(CELLS[c]["pairing"], CELLS[c]["data_per_class"]): len(rep.seeds_of(c)) for c in range(len(CELLS))}


def make(max_seeds=9, halfwidth=None, hyps=HYPS) -> Replicates:
    return Replicates(CELLS, [10, 11, 12], hyps, ["data_per_class"],
                      AdaptiveSettings(first=3, max_seeds=max_seeds, target_halfwidth=halfwidth))


def test_decided_cells_get_no_more_seeds_and_hopeless_ones_stop_for_futility():
    # Group-sequential design (subject changed from Bonferroni over looks): a 35-point gap with a
    # one-point spread is decided even at the first look's 99.996% level; a 40-point spread with no
    # difference gets a second wave and then stops for futility (no decision in reach by 9 seeds).
    rep = make(max_seeds=9)
    drive(rep)
    counts = seeds_per_cell(rep)
    assert counts[(CNN, 10)] == counts[(MLP, 10)] == 3  # decided at the first look
    assert counts[(CNN, 30)] == counts[(MLP, 30)] == 3  # no hypothesis: never more
    assert counts[(CNN, 100)] == counts[(MLP, 100)] == 6  # futile at the second look: no third wave
    assert rep.seeds_of(CELLS.index({"pairing": CNN, "data_per_class": 100, "lr": 0.01})) == list(range(10, 16))
    assert len(rep.looks) == 2 and rep.settings.max_looks == 3
    assert rep.looks[0].decided == ["CNN > MLP at data_per_class=10: yes"] and len(rep.looks[0].open) == 1
    assert "futile at --max-seeds 9" in rep.looks[-1].open[0]
    assert rep.looks[-1].open[0].startswith("CNN > MLP at data_per_class=100: inconclusive: cannot exclude")
    frame = rep.frame()
    assert sorted(set(frame["wave"])) == [0, 1] and len(frame) == 4 * 3 + 2 * 6
    assert not frame.duplicated(["cell", "seed"]).any()


def test_open_cells_get_seeds_up_to_the_maximum_and_never_more():
    rep = make(max_seeds=9, halfwidth=0.001, hyps=())
    drive(rep, value=lambda cfg, seed: 0.5 + 0.01 * (seed % 4))
    assert set(seeds_per_cell(rep).values()) == {9} and len(rep.looks) == rep.settings.max_looks == 3
    assert "at --max-seeds 9" in rep.looks[-1].note


def test_maximum_holds_with_an_uneven_step_and_failures():
    rep = Replicates(CELLS, [10, 11, 12], (), ["data_per_class"],
                     AdaptiveSettings(first=3, max_seeds=7, step=3, target_halfwidth=0.001))
    drive(rep, value=lambda cfg, seed: 0.5 + 0.01 * (seed % 4), fail=lambda cfg, seed: seed == 14 and cfg["data_per_class"] == 100)
    assert max(seeds_per_cell(rep).values()) == 7 and rep.settings.max_looks == 3
    assert (rep.frame()["status_reason"] == "failed").sum() == 2


def test_target_halfwidth_adds_seeds_to_wide_cells_only():
    noisy = lambda cfg, seed: (0.9 if cfg["data_per_class"] != 30 else 0.5) + (
        0.2 * (seed % 2) if cfg["data_per_class"] == 30 else 0.001 * (seed % 2))
    rep = make(max_seeds=6, halfwidth=0.05, hyps=())
    drive(rep, value=noisy)
    counts = seeds_per_cell(rep)
    assert counts[(CNN, 30)] == counts[(MLP, 30)] == 6 and counts[(CNN, 10)] == counts[(MLP, 100)] == 3


def test_everything_decided_after_the_first_wave_stops_at_once():
    # six seeds a side in the first wave: enough for the exact test at the first look's level
    rep = Replicates(CELLS, list(range(10, 16)), HYPS[:1], ["data_per_class"], AdaptiveSettings(first=6, max_seeds=12))
    assert drive(rep) == 36 and len(rep.looks) == 1 and rep.finished


def test_state_round_trip_continues_without_duplicates():
    rep = make(max_seeds=9)
    drive(rep, stop_after=20)  # mid-way through the second wave, two trials still running
    saved = json.loads(json.dumps(rep.state()))
    running = [t for t in rep.issued if t not in rep.results]
    again = make(max_seeds=9)
    again.load_state(saved)
    for tid in running:  # Tune restarts the unfinished trials under their old ids
        cell, seed, _ = again.issued[tid]
        again.complete(tid, {"val_acc": outcome(CELLS[cell], seed), "epochs_completed": 5})
    drive(again)
    frame = again.frame()
    assert not frame.duplicated(["cell", "seed"]).any()
    assert seeds_per_cell(again) == seeds_per_cell((lambda r: (drive(r), r)[1])(make(max_seeds=9)))


def test_settings_are_checked():
    with pytest.raises(ConfigError, match="below the first wave"):
        AdaptiveSettings(first=3, max_seeds=2)
    with pytest.raises(ConfigError, match="fraction"):
        AdaptiveSettings(first=3, target_halfwidth=5)
    s = AdaptiveSettings(first=3, max_seeds=12)
    assert s.max_looks == s.design.k == 4 and s.design.looks == (3, 6, 9, 12)
    levels = s.design.levels  # O'Brien-Fleming type: strict early, near 0.025 at the end
    assert levels[0] < 1e-4 < levels[1] < levels[2] < levels[3] < 0.025
    assert [s.wave_of(i) for i in range(12)] == [0] * 3 + [1] * 3 + [2] * 3 + [3] * 3
    assert "O'Brien-Fleming" in s.rule and "over 4 looks" in s.rule
    assert json.loads(s.parent_tags()["look_seeds"]) == [3, 6, 9, 12]


class _EveryLookAtAlpha(Design):
    """The uncorrected rule, written out here (not derived from the code under test): every look
    tests at the full two-sided alpha."""

    @property
    def levels(self) -> tuple[float, ...]:
        return (self.alpha / 2,) * self.k


class _UncorrectedSettings(AdaptiveSettings):
    @property
    def design(self):
        d = super().design
        return _EveryLookAtAlpha(d.looks, d.alpha, d.spending)


def null_decided(reps: int, alpha: float = 0.05, seed: int = 0, settings_cls=AdaptiveSettings) -> float:
    """Fraction of null sweeps (both sides from the same bimodal distribution) that end "different"."""
    hyp = (Hypothesis("CNN > MLP", CNN, MLP),)
    cells = [{"pairing": CNN}, {"pairing": MLP}]
    decided = 0
    for i in range(reps):
        settings = settings_cls(first=3, max_seeds=12, alpha=alpha)
        rep = Replicates(cells, [10, 11, 12], hyp, [], settings)

        def value(cfg, s, i=i):  # the same draw for (sweep, side, seed) whatever the rule: paired comparison
            rng = np.random.default_rng([seed, i, cfg["pairing"] == CNN, s])
            # 80% of seeds learn (~0.96), 20% collapse to chance (~0.34): the bimodal outcome
            return rng.normal(0.96, 0.02) if rng.random() < 0.8 else rng.normal(0.34, 0.01)

        drive(rep, value=value)
        decided += any(d.endswith((": yes", ": no")) for look in rep.looks for d in look.decided)
    return decided / reps


def test_error_rate_under_repeated_looks_stays_below_alpha():
    # The design's own error rates are simulated in tests/test_sequential.py; this drives the searcher.
    reps = 60
    honest = null_decided(reps)
    mc = 3 * np.sqrt(0.05 * 0.95 / reps)  # three Monte-Carlo standard errors
    assert honest <= 0.05 + mc
    assert null_decided(reps, alpha=0.9) > honest  # a lax design on the same data stream decides more
    # The correction over looks is what keeps it there: the same sweeps judged at the full alpha at
    # every look end "different" more often (without the correction, honest equals this).
    assert null_decided(reps, settings_cls=_UncorrectedSettings) > honest


@pytest.mark.slow
def test_error_rate_under_repeated_looks_many_sweeps():
    reps = 2000
    honest = null_decided(reps, seed=1)
    assert honest <= 0.05 + 3 * np.sqrt(0.05 * 0.95 / reps)


def test_grid_cells_are_the_plan_cells_without_seeds():
    from cluster.flow.adaptive import grid_cells
    from cluster.planning.plan import make_plan
    from search_spaces import get_experiment

    plan = make_plan(get_experiment("edge-data-per-class"), smoke=True)
    cells = grid_cells(plan)
    assert len(cells) == 2 * 2 and all("seed" not in c for c in cells)
    assert {(c["pairing"], c["data_per_class"]) for c in cells} == {(p, d) for p in plan.axes["pairing"] for d in (10, 30)}


@pytest.mark.parametrize("argv, message", [
    (["edge-data-per-class", "--until-decided", "--max-seeds", "2"], "below the first wave"),
    (["edge-data-per-class", "--max-seeds", "5"], "apply to --until-decided only"),
    (["edge-hpo", "--until-decided"], "cannot be combined with sampled axes"),
    (["edge-overfit-small", "--until-decided"], "declares no hypotheses"),  # with its claims removed (below)
    (["edge-data-per-class", "--until-decided", "--pack", "4"], "--pack"),
])
def test_bad_adaptive_options_exit_2_before_ray_or_mlflow(argv, message, tmp_path, capsys, monkeypatch):
    import dataclasses

    from cluster.cli import main
    from search_spaces import EXPERIMENTS

    if message == "declares no hypotheses":  # every grid experiment now declares its source's claims
        monkeypatch.setitem(EXPERIMENTS, argv[0], dataclasses.replace(EXPERIMENTS[argv[0]], hypotheses=()))

    db = tmp_path / "m.db"
    assert main(["run", *argv, "--tracking-uri", f"sqlite:///{db}", "--storage-path", str(tmp_path / "rr")]) == 2
    assert message in capsys.readouterr().err
    assert not db.exists()


def test_each_look_decides_at_its_own_level():
    """Fully separated sides: at 3 seeds the first look's 99.99% interval cannot exclude 0 (more
    seeds); at 6 the second look's can, and the verdict is flagged as an early stop."""
    values = {CNN: [0.74, 0.76, 0.80, 0.79, 0.77, 0.75], MLP: [0.64, 0.68, 0.70, 0.66, 0.67, 0.65]}
    cells = [{"pairing": CNN}, {"pairing": MLP}]
    rep = Replicates(cells, [10, 11, 12], (Hypothesis("CNN > MLP", CNN, MLP),), [],
                     AdaptiveSettings(first=3, max_seeds=12))
    for i, (cell, seed) in enumerate([(c, s) for s in (10, 11, 12) for c in (0, 1)]):
        assert rep.next(f"t{i}") == {**cells[cell], "seed": seed}
        rep.complete(f"t{i}", {"val_acc": values[cells[cell]["pairing"]][seed - 10], "epochs_completed": 5})
    nxt = rep.next("t6")
    look = rep.looks[0]
    assert look.decided == [] and "(99.996% interval)" in look.open[0]
    assert nxt == {"pairing": CNN, "seed": 13} and look.cells_next == 2
    for i, (cell, seed) in enumerate([(c, s) for s in (13, 14, 15) for c in (0, 1)], start=7):
        cfg = nxt if i == 7 else rep.next(f"t{i}")
        tid = "t6" if i == 7 else f"t{i}"
        rep.complete(tid, {"val_acc": values[cfg["pairing"]][cfg["seed"] - 10], "epochs_completed": 5})
    assert rep.next("t99") == FINISHED and rep.looks[1].decided == ["CNN > MLP: yes"]
    [r] = rep.verdicts()
    assert r.early_stop and r.look == "look 2 of 4" and "stopped early" in r.sentence


def test_a_study_takes_the_other_side_from_its_own_sweep(monkeypatch):
    """Issue 20: within a study ("<study>.<experiment>") the other experiment's side is the study's
    own sweep of it, never that experiment's newest sweep; outside a study, the newest."""
    from types import SimpleNamespace

    import pandas as pd

    import analysis.load
    from cluster.flow.adaptive import other_runs

    asked = []

    def fake_load(uri, experiment=None, sweep=None, parent_run_id=None):
        asked.append((experiment, sweep))
        return SimpleNamespace(runs=pd.DataFrame({"x": [1]}))

    monkeypatch.setattr(analysis.load, "load_sweep", fake_load)
    hyp = Hypothesis("deeper > simple", "deeper_cnn/edges", CNN, other_experiment="edge-data-per-class")
    plan = SimpleNamespace(experiment=SimpleNamespace(name="edge-deeper", hypotheses=(hyp,)))
    assert list(other_runs(plan, "sqlite://", "study-edge.edge-deeper")) == ["edge-data-per-class"]
    other_runs(plan, "sqlite://", "my-sweep")
    assert asked == [(None, "study-edge.edge-data-per-class"), ("edge-data-per-class", None)]
