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


def test_summary_counts_the_waves_run_and_the_looks_taken():
    # Three seeds decide dpc=10; dpc=100 gets a second wave, then stops for futility: 2 waves, 2 looks.
    rep = make(max_seeds=9)
    assert rep.summary() == {"looks_taken": 0, "waves": 1, "decided": [], "open": [], "note": ""}
    drive(rep)
    s = rep.summary()
    assert s["waves"] == 2 == len(set(rep.frame()["wave"])) and s["looks_taken"] == 2
    assert s["decided"] == rep.looks[-1].decided and s["open"] == rep.looks[-1].open
    # Everything decided at the first look: one wave.
    one = Replicates(CELLS, list(range(10, 16)), HYPS[:1], ["data_per_class"], AdaptiveSettings(first=6, max_seeds=12))
    drive(one)
    assert one.summary()["waves"] == 1 and one.summary()["looks_taken"] == 1

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


def test_the_most_trials_the_waves_can_add_is_checked_against_the_sweep_limit():
    # edge-data-per-class: 8 cells, 3 first-wave seeds. --max-seeds M allows up to 8 * M trials,
    # refused above the 10,000-trial limit unless --yes, like any sweep's size.
    from cluster.flow.options import RunOptions
    from cluster.flow.sweep import plan_sweep
    from cluster.planning.validate import MAX_TRIALS

    def adaptive(max_seeds, allow_large=False):
        opts = RunOptions(experiment="edge-data-per-class", until_decided=True, max_seeds=max_seeds,
                          allow_large=allow_large)
        return plan_sweep(opts)

    at_limit = adaptive(MAX_TRIALS // 8)
    assert at_limit.plan.n_trials() == 8 * 3 and at_limit.adaptive.max_seeds == MAX_TRIALS // 8
    with pytest.raises(ConfigError, match=f"{8 * (MAX_TRIALS // 8 + 1):,} trials, more than the limit"):
        adaptive(MAX_TRIALS // 8 + 1)
    assert adaptive(MAX_TRIALS // 8 + 1, allow_large=True).adaptive.max_seeds == MAX_TRIALS // 8 + 1

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

    def fake_load(uri, experiment=None, sweep=None, parent_run_id=None, histories=True):
        asked.append((experiment, sweep))
        assert not histories  # final values only: the histories are most of a load's time
        return SimpleNamespace(runs=pd.DataFrame({"x": [1]}))

    monkeypatch.setattr(analysis.load, "load_sweep", fake_load)
    hyp = Hypothesis("deeper > simple", "deeper_cnn/edges", CNN, other_experiment="edge-data-per-class")
    plan = SimpleNamespace(experiment=SimpleNamespace(name="edge-deeper", hypotheses=(hyp,)))
    assert list(other_runs(plan, "sqlite://", "study-edge.edge-deeper")) == ["edge-data-per-class"]
    other_runs(plan, "sqlite://", "my-sweep")
    assert asked == [(None, "study-edge.edge-data-per-class"), ("edge-data-per-class", None)]


def _deeper_vs_simple(with_sides: bool = True, stored_seeds=range(10, 16)):
    """edge-deeper's claim against the study's own edge-five-class sweep (SimpleCNN at 30/class, 6
    seeds stored). DeeperCNN collapses on some seeds: the claim stays open at the first looks."""
    import pandas as pd

    from cluster.flow.adaptive import OtherCell

    deeper = [{"pairing": "deeper_cnn/edges", "data_per_class": 30, "lr": 1e-3}]
    hyp = Hypothesis("deeper CNN < SimpleCNN at data_per_class=30", "deeper_cnn/edges", CNN, mode="min",
                     at={"data_per_class": 30}, other_experiment="edge-five-class")
    simple = [{"pairing": p, "data_per_class": d, "lr": 1e-2} for p in (CNN, MLP) for d in (10, 30)]
    rng = np.random.default_rng(5)
    stored = pd.DataFrame([{**c, "seed": s, "val_acc": 0.85 + 0.15 * rng.random(), "classes_lost": 0,
                            "status_reason": "completed"} for c in simple for s in stored_seeds])
    sides = [OtherCell("edge-five-class", simple[1], {"pairing": CNN, "data_per_class": 30})] if with_sides else []
    return Replicates(deeper, [10, 11, 12], (hyp,), [], AdaptiveSettings(first=3, max_seeds=12),
                      {"edge-five-class": stored}, sides)


def _deeper_value(cfg, seed):
    if cfg["pairing"] == CNN:
        return 0.85 + 0.15 * ((seed * 7) % 10) / 10
    return 0.2 if seed % 3 == 1 else 0.76 + 0.15 * ((seed * 3) % 10) / 10  # collapses on one seed of three


def test_the_other_side_of_a_cross_experiment_claim_gets_seeds_too():
    """Issue 20: while a claim against another experiment's sweep is open, that cell of the study's
    own sweep of the other experiment gets seeds too (recorded there: the config names it), never a
    seed it already has, never past this side's count or --max-seeds; without it the claim's seeds
    per side stay at the other side's 6."""
    from cluster.flow.adaptive import OTHER_KEY

    rep = _deeper_vs_simple()
    asked = []
    orig = rep.next

    def record(tid):
        out = orig(tid)
        if isinstance(out, dict):
            asked.append(out)
        return out

    rep.next = record
    drive(rep, value=_deeper_value)
    other = [c for c in asked if c.get(OTHER_KEY) == "edge-five-class"]
    assert other, "the other side never got a seed"
    assert all(c["pairing"] == CNN and c["data_per_class"] == 30 and c["lr"] == 1e-2 for c in other)
    assert sorted(c["seed"] for c in other) == list(range(16, 16 + len(other)))  # after the stored 10-15
    own = [c for c in asked if OTHER_KEY not in c]
    assert len(other) + 6 <= len(own) <= 12  # it catches up, never overtakes this side
    merged = rep.merged_others()["edge-five-class"]
    cell = merged[(merged["pairing"] == CNN) & (merged["data_per_class"] == 30)]
    assert not cell.duplicated("seed").any() and len(cell) == 6 + len(other)
    [r] = rep.verdicts()
    assert r.worse[3] == 6 + len(other)  # the verdict reads the added seeds
    # Without the other side's cells, the claim never sees more than 6 seeds on that side.
    alone = _deeper_vs_simple(with_sides=False)
    drive(alone, value=_deeper_value)
    assert alone.verdicts()[0].worse[3] == 6


def test_a_resumed_sweep_counts_the_other_sides_trials_once():
    """After a resume, the trials this sweep added to the other experiment's sweep are in the store
    too: they are counted once and their seeds are not issued again."""
    import pandas as pd

    from cluster.flow.adaptive import OTHER_KEY

    rep = _deeper_vs_simple()
    drive(rep, value=_deeper_value)
    added = rep.frame("edge-five-class")
    assert not added.empty and (added["seed"] >= 16).all()
    store = pd.concat([rep.others["edge-five-class"], added.drop(columns=["cell"])], ignore_index=True)
    again = _deeper_vs_simple()
    again.others = {"edge-five-class": store}
    again.load_state(json.loads(json.dumps(rep.state())))
    merged = again.merged_others()["edge-five-class"]
    assert len(merged) == len(store) and not merged.duplicated(["pairing", "data_per_class", "seed"]).any()
    other_cell = len(again.cells)
    assert again.seeds_of(other_cell) == sorted(set(range(10, 16)) | set(added["seed"]))
    assert OTHER_KEY not in again.frame().columns


def test_the_other_sides_cells_come_from_the_studys_own_sweep_of_that_experiment(monkeypatch):
    """other_sides rebuilds the other sweep's plan from its recorded options and keeps the cells a
    claim compares with; train_sides logs those trials under that sweep (the key never reaches training)."""
    from types import SimpleNamespace

    import pandas as pd

    import cluster.folder.record as record_mod
    import trainables.trainable
    from cluster.flow.adaptive import OTHER_KEY, other_sides
    from cluster.flow.options import RunOptions
    from cluster.tuner.adaptive_searcher import train_sides
    from search_spaces import get_experiment

    asked = []

    def fake_find(name, storage):
        asked.append(name)
        opts = RunOptions(experiment="edge-five-class", name=name, smoke=True)
        return SimpleNamespace(options=vars(opts), tracking_info=lambda: f"tracking of {name}")

    monkeypatch.setattr(record_mod, "find_sweep", fake_find)
    plan = SimpleNamespace(experiment=get_experiment("edge-deeper"))
    others = {"edge-five-class": pd.DataFrame()}
    cells, tracking = other_sides(plan, "study-edge.edge-deeper", None, others)
    assert asked == ["study-edge.edge-five-class"]
    assert cells and {c.config["pairing"] for c in cells} == {CNN} and {c.experiment for c in cells} == {
        "edge-five-class"}
    assert {c.key["data_per_class"] for c in cells} == {c.config["data_per_class"] for c in cells}
    assert tracking == {"edge-five-class": "tracking of study-edge.edge-five-class"}
    assert other_sides(plan, "my-sweep", None, others) == ([], {})  # outside a study: no other sweep to add to
    assert other_sides(plan, "study-edge.edge-deeper", None, {}) == ([], {})  # its runs were not loaded

    seen = []
    monkeypatch.setattr(trainables.trainable, "train", lambda config, tracking, modules: seen.append((config, tracking)))
    train_sides({"pairing": CNN, "seed": 16, OTHER_KEY: "edge-five-class"}, "own", {"edge-five-class": "theirs"})
    train_sides({"pairing": "deeper_cnn/edges", "seed": 13}, "own", {"edge-five-class": "theirs"})
    assert seen == [({"pairing": CNN, "seed": 16}, "theirs"), ({"pairing": "deeper_cnn/edges", "seed": 13}, "own")]


def test_each_wave_starts_its_longest_trials_first_and_runs_the_same_trials():
    """Wall time only: a wave's trials go longest first (the first wave by data_per_class x epochs,
    later waves by the cells' measured train_time_s), so a wave ends on short trials instead of one
    core waiting on a long one; which cells get which seeds is unchanged."""
    def timed(cfg, seed):
        return {"val_acc": outcome(cfg, seed), "epochs_completed": 5,
                "train_time_s": {10: 50.0, 30: 1.0, 100: 20.0}[cfg["data_per_class"]]}

    rep = make(max_seeds=9)
    first = [rep.next(f"a{i}") for i in range(len(CELLS) * 3)]
    assert [c["data_per_class"] for c in first] == [100] * 6 + [30] * 6 + [10] * 6  # by size
    assert [c["seed"] for c in first[:2]] == [10, 10]  # ties seed-major: cells advance together
    for i, cfg in enumerate(first):
        rep.complete(f"a{i}", timed({k: v for k, v in cfg.items() if k != "seed"}, cfg["seed"]))
    # later waves: by the measured times (dpc=10 now the longest), not by size
    later = rep.longest_first([(c, 13, 1) for c in range(len(CELLS))])
    assert [CELLS[c]["data_per_class"] for c, _, _ in later] == [10, 10, 100, 100, 30, 30]
    wave1 = [rep.next(f"b{i}") for i in range(len(rep.queue) + 1) if rep.queue or not rep.pending()]
    wave1 = [c for c in wave1 if isinstance(c, dict)]
    assert wave1 and [c["data_per_class"] for c in wave1] == sorted(
        (c["data_per_class"] for c in wave1), key=lambda d: -{10: 50, 30: 1, 100: 20}[d])
    # the same seeds per cell as before the ordering (seed-major), whatever the order
    plain = make(max_seeds=9)
    plain.longest_first = lambda queue: sorted(queue, key=lambda q: (q[1], q[0]))
    plain.queue = plain.longest_first(plain.queue)
    ordered = make(max_seeds=9)
    drive(plain), drive(ordered)
    assert seeds_per_cell(plain) == seeds_per_cell(ordered)
    assert {(c, s) for c, s, _ in plain.issued.values()} == {(c, s) for c, s, _ in ordered.issued.values()}


def test_a_run_and_its_resume_record_the_other_sides_trials_in_that_sweep(monkeypatch):
    """assemble.trainable (used by `sweep run` and by `sweep resume`) gives an adaptive sweep of a study
    the other sweeps' tracking: a resumed sweep records the other side where the first run did; a
    trial of a sweep it cannot find is refused with the reason, never logged in the wrong sweep."""
    from types import SimpleNamespace

    import cluster.folder.record as record_mod
    import cluster.tuner.adaptive_searcher as AS
    from cluster.flow.adaptive import OTHER_KEY
    from cluster.tuner import assemble

    monkeypatch.setattr(record_mod, "find_sweep",
                        lambda name, storage: SimpleNamespace(tracking_info=lambda: f"tracking of {name}"))
    record = SimpleNamespace(experiment="edge-deeper", name="study-edge.edge-deeper", storage_path="/nowhere",
                             options={"until_decided": True})
    assert AS.other_tracking(record) == {"edge-five-class": "tracking of study-edge.edge-five-class"}
    assert AS.other_tracking(SimpleNamespace(**{**vars(record), "name": "my-sweep"})) == {}
    made = []
    monkeypatch.setattr(AS, "sides_trainable", lambda rec, others: made.append(others) or "sides")
    assert assemble.trainable(record) == "sides" and made == [AS.other_tracking(record)]
    with pytest.raises(ConfigError, match="edge-five-class"):
        AS.train_sides({"pairing": CNN, "seed": 16, OTHER_KEY: "edge-five-class"}, "own", {})


def test_another_experiments_cell_without_stored_seeds_starts_at_the_first_seed():
    """A cell of the other sweep with no seed of its own in the store (here: another lr than the runs
    the claim read) starts at the first wave's first seed, like a cell of this sweep."""
    from cluster.flow.adaptive import OTHER_KEY, OtherCell

    rep = _deeper_vs_simple()
    cfg = {"pairing": CNN, "data_per_class": 30, "lr": 0.5}
    rep.other_cells = [OtherCell("edge-five-class", cfg, {"pairing": CNN, "data_per_class": 30, "lr": 0.5})]
    assert rep.seeds_of(len(rep.cells)) == []
    asked = []
    while isinstance(out := rep.next(f"t{len(rep.issued)}"), dict):
        asked.append(out)
        rep.complete(f"t{len(rep.issued) - 1}", {"val_acc": _deeper_value(out, out["seed"]), "epochs_completed": 5})
    other = [c["seed"] for c in asked if c.get(OTHER_KEY)]
    assert other and other[:3] == [10, 11, 12]
