"""`sweep run EXP --until-decided`: replicates added, wave by wave, only where the answer is still open.

The first wave runs the experiment's seeds in every cell. After each wave completes, the
declared claims are answered from the results so far (analysis.hypotheses: the two-part exact
test per cell). Cells that take part in a still-inconclusive claim (or, with --target-halfwidth
H, whose accuracy interval is wider than H) get the next `step` seeds; decided cells get none.
This repeats until nothing needs seeds or every such cell holds --max-seeds seeds.

Stopping rule: a group-sequential design (analysis.sequential.Design) with looks at first,
first + step, ..., max_seeds seeds per side and Lan-DeMets O'Brien-Fleming-type alpha spending;
each look decides at its own level, and the interval shown is at that level. A claim stops
early when its interval excludes 0 (different), lies within +-margin (equivalent: the null
stops early too) or, from the second look on, when the power-based seeds needed exceed
--max-seeds (non-binding futility: it can only remove decisions). `python -m analysis.simulate`
prints the error rates and power of this design.

Ray Tune-native: `AdaptiveSearcher` (cluster.tuner.adaptive_searcher) is a Tune Searcher; the run ends
when it says FINISHED (one Ray session, one parent run); its state is saved with the experiment, so
`sweep resume` continues without duplicates. Each replicate is a child run tagged `wave` (0 = first).
Settings, grid cells and a study's other sides: cluster.flow.adaptive_plan.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pandas loads when replicates are counted, not while a plan is checked
    import pandas as pd

from cluster.flow.adaptive_plan import (OTHER_KEY, OtherCell, _same, grid_cells, other_runs,  # noqa: F401
                                        other_sides, settings_from, study_of, trial_size)
from core import store_schema as SS
from core.errors import ConfigError

log = logging.getLogger(__name__)
ALPHA = 0.05
DEFAULT_MAX_SEEDS = 12
FINISHED = "FINISHED"  # == ray.tune.search.Searcher.FINISHED (kept importable without Ray)


@dataclass(frozen=True)
class AdaptiveSettings:
    """--until-decided options, checked before Ray or MLflow start.

    Attributes:
        first: seeds of the first wave (the experiment's --seeds).
        max_seeds: most seeds any cell gets (--max-seeds).
        step: seeds added to an open cell per wave (default: as many as the first wave).
        target_halfwidth: also add seeds to cells whose accuracy interval half-width exceeds
            this (a fraction, e.g. 0.05 = 5 points); None = hypotheses only.
        alpha: two-sided error rate of each claim over all looks.
        spending: alpha-spending function, "obf" (O'Brien-Fleming type) or "pocock".
    """

    first: int
    max_seeds: int = DEFAULT_MAX_SEEDS
    step: int | None = None
    target_halfwidth: float | None = None
    alpha: float = ALPHA
    spending: str = "obf"

    def __post_init__(self):
        if self.first < 1:
            raise ConfigError(f"--until-decided needs at least one seed in the first wave, got {self.first}")
        if self.max_seeds < self.first:
            raise ConfigError(f"--max-seeds {self.max_seeds} is below the first wave's {self.first} seeds; "
                              f"use --max-seeds >= {self.first} (or fewer --seeds)")
        if self.step is not None and self.step < 1:
            raise ConfigError(f"the wave step must be >= 1 seed, got {self.step}")
        if self.target_halfwidth is not None and not 0 < self.target_halfwidth < 1:
            raise ConfigError(f"--target-halfwidth is a fraction of accuracy in (0, 1), e.g. 0.05; "
                              f"got {self.target_halfwidth}")
        if not 0 < self.alpha < 1:
            raise ConfigError(f"alpha must be in (0, 1), got {self.alpha}")

    @property
    def wave_step(self) -> int:
        return self.step or self.first

    @property
    def max_looks(self) -> int:
        """Looks at the data: after the first wave and after each added wave, at most."""
        return 1 + math.ceil((self.max_seeds - self.first) / self.wave_step)

    @property
    def design(self):
        from analysis.sequential import Design

        return Design.waves(self.first, self.max_seeds, self.wave_step, self.alpha, self.spending)

    def wave_of(self, seed_index: int) -> int:
        """Wave of the seed_index-th seed of a cell (0-based): 0 for the first wave."""
        return 0 if seed_index < self.first else 1 + (seed_index - self.first) // self.wave_step

    @property
    def rule(self) -> str:
        return (f"stopping rule: {self.design.rule}; seeds added {self.wave_step} per wave up to {self.max_seeds} "
                "per cell; futility stop when the seeds needed exceed that")

    def parent_tags(self) -> dict[str, str]:
        d = self.design
        return {SS.TAG_UNTIL_DECIDED: "true", SS.TAG_STOPPING_RULE: self.rule, SS.TAG_MAX_LOOKS: str(self.max_looks),
                SS.TAG_LOOK_SEEDS: json.dumps(list(d.looks)), SS.TAG_SPENDING: d.spending,
                SS.TAG_ALPHA: repr(d.alpha), SS.TAG_MAX_SEEDS: str(self.max_seeds),
                "wave_step": str(self.wave_step), "first_wave_seeds": str(self.first),
                SS.TAG_TARGET_HALFWIDTH: "none" if self.target_halfwidth is None else repr(self.target_halfwidth)}


@dataclass
class Look:
    """One look at the results: after wave `wave`, which hypotheses were decided and what comes next."""

    wave: int
    decided: list[str]
    open: list[str]
    cells_next: int
    note: str = ""


@dataclass
class Replicates:
    """The adaptive replicate logic, without Ray: cells, issued trials, results, looks.

    Args:
        cells: one flat trial config per grid cell (no seed), e.g. Plan.cells().
        seeds: the first wave's seeds (consecutive; later waves continue the sequence).
        hypotheses: the experiment's Hypothesis objects.
        keys: cell keys other than the pairing (the plan's swept keys).
        settings: AdaptiveSettings.
        others: experiment name -> runs DataFrame for hypotheses with `other_experiment`.
        other_cells: cells of those experiments' sweeps (in the same study) that may get seeds
            while a claim comparing with them is open; their cell indices follow `cells`. Their
            trials carry OTHER_KEY, are recorded in that experiment's sweep, and their seeds
            continue after every seed that cell has in the store (no two replicates the same trial).
    """

    cells: list[dict[str, Any]]
    seeds: list[int]
    hypotheses: Sequence
    keys: list[str]
    settings: AdaptiveSettings
    others: dict[str, pd.DataFrame] = field(default_factory=dict)
    other_cells: list[OtherCell] = field(default_factory=list)
    issued: dict[str, tuple[int, int, int]] = field(default_factory=dict)  # trial id -> (cell, seed, wave)
    results: dict[str, dict[str, Any] | None] = field(default_factory=dict)  # trial id -> metrics (None: failed)
    queue: list[tuple[int, int, int]] = field(default_factory=list)
    wave: int = 0
    finished: bool = False
    looks: list[Look] = field(default_factory=list)

    def __post_init__(self):
        if not self.queue and not self.issued:
            self.queue = self.longest_first([(c, s, 0) for s in self.seeds for c in range(len(self.cells))])

    # -- order of a wave (wall time only: the cells, seeds and results are the same in any order) ---
    def measured(self, cell: int) -> float | None:
        """Mean train_time_s of the cell's completed trials (this sweep's, and the store's for another
        experiment's cell); None before any completed."""
        times = [r[SS.METRIC_TRAIN_TIME_S] for tid, (c, _, _) in self.issued.items() if c == cell
                 for r in [self.results.get(tid)] if r and SS.METRIC_TRAIN_TIME_S in r]
        stored = self._stored(cell)
        if stored is not None and SS.METRIC_TRAIN_TIME_S in stored:
            times += [float(t) for t in stored[SS.METRIC_TRAIN_TIME_S] if t == t]
        return sum(times) / len(times) if times else None

    def size(self, cell: int) -> float:
        return trial_size(self.cells[cell] if cell < len(self.cells) else self.other_cells[cell - len(self.cells)].config)

    def longest_first(self, queue: list[tuple[int, int, int]]) -> list[tuple[int, int, int]]:
        """A wave's trials, longest first (LPT: a wave ends on short trials, so a core waits less before
        the look). One measure for the whole wave: measured times where every cell has one, else the
        configs' size. Ties seed-major: every cell advances together."""
        cells = sorted({q[0] for q in queue})
        times = {c: self.measured(c) for c in cells}
        cost = times if all(t is not None for t in times.values()) else {c: self.size(c) for c in cells}
        return sorted(queue, key=lambda q: (-cost[q[0]], q[1], q[0]))

    # -- what Tune calls -------------------------------------------------------------------
    def next(self, trial_id: str) -> dict[str, Any] | str | None:
        """A trial config, None (wait for running trials) or FINISHED."""
        if self.finished:
            return FINISHED
        if not self.queue:
            if self.pending():
                return None
            self.look()
            if self.finished:
                return FINISHED
        cell, seed, wave = self.queue.pop(0)
        self.issued[trial_id] = (cell, seed, wave)
        if cell >= len(self.cells):
            other = self.other_cells[cell - len(self.cells)]
            return {**other.config, "seed": seed, OTHER_KEY: other.experiment}
        return {**self.cells[cell], "seed": seed}

    def complete(self, trial_id: str, result: dict | None, error: bool = False) -> None:
        if trial_id not in self.issued:
            return
        ok = not error and result is not None and SS.METRIC_EPOCHS_COMPLETED in result
        self.results[trial_id] = {k: v for k, v in result.items() if isinstance(v, (int, float))} if ok else None

    def pending(self) -> int:
        return sum(1 for t in self.issued if t not in self.results)

    # -- decisions -------------------------------------------------------------------------
    def frame(self, experiment: str | None = None) -> pd.DataFrame:
        """Completed replicates so far as a runs table (the shape analysis.hypotheses reads): this
        sweep's cells, or (`experiment`) the trials this sweep added to that experiment's cells."""
        import pandas as pd

        rows = []
        for tid, (cell, seed, wave) in self.issued.items():
            res = self.results.get(tid, False)
            other = self.other_cells[cell - len(self.cells)] if cell >= len(self.cells) else None
            if res is False or (other.experiment != experiment if other else experiment is not None):
                continue
            row = {**(other.config if other else self.cells[cell]), SS.PARAM_SEED: seed, SS.TAG_WAVE: wave, "cell": cell,
                   SS.TAG_STATUS_REASON: SS.STATUS_COMPLETED if res else SS.STATUS_FAILED, **(res or {})}
            rows.append({k: (tuple(v) if isinstance(v, list) else v) for k, v in row.items()})
        return pd.DataFrame(rows)

    def seeds_of(self, cell: int) -> list[int]:
        mine = {s for c, s, _ in list(self.issued.values()) + self.queue if c == cell}
        return sorted(mine | set(self._stored_seeds(cell)))

    def _stored(self, cell: int) -> pd.DataFrame | None:
        """The store's runs of another experiment's cell (any status), or None for a cell of this sweep."""
        from analysis.hypotheses import restrict

        if cell < len(self.cells):
            return None
        other = self.other_cells[cell - len(self.cells)]
        runs = self.others.get(other.experiment)
        return None if runs is None or runs.empty else restrict(runs, other.key)

    def _stored_seeds(self, cell: int) -> list[int]:
        runs = self._stored(cell)
        if runs is None or SS.PARAM_SEED not in runs:
            return []
        return [int(s) for s in runs[SS.PARAM_SEED] if s == s]

    def merged_others(self) -> dict[str, pd.DataFrame]:
        """The other experiments' runs with the trials this sweep added to them (a resumed sweep finds
        its own earlier additions in the store too: counted once)."""
        import pandas as pd

        out = dict(self.others)
        for name in {o.experiment for o in self.other_cells}:
            added = self.frame(name)
            if added.empty:
                continue
            base = out.get(name, pd.DataFrame())
            if not base.empty and SS.PARAM_SEED in base:
                mine = {(c, s) for c, s, _ in self.issued.values() if c >= len(self.cells)}
                drop = pd.Series(False, index=base.index)
                for c, s in mine:
                    stored = self._stored(c)
                    if stored is not None:
                        drop |= base.index.isin(stored.index[stored[SS.PARAM_SEED] == s])
                base = base[~drop]
            out[name] = pd.concat([base, added.drop(columns=["cell"])], ignore_index=True)
        return out

    def verdicts(self):
        from analysis.hypotheses import evaluate_all

        runs = self.frame()
        if runs.empty:
            return []
        return evaluate_all(self.hypotheses, runs, self.keys, self.merged_others(), alpha=self.settings.alpha,
                            intervals=False, design=self.settings.design, sequential=True)

    def involved(self, result, h) -> set[int]:
        """Cells (indices) whose runs enter `result` (one hypothesis in one cell)."""
        sides = [(h.better, getattr(h, "better_fixed", None) or {})]
        if not getattr(h, "other_experiment", None):
            sides.append((h.worse, getattr(h, "worse_fixed", None) or {}))
        out = set()
        for i, cfg in enumerate(self.cells):
            for name, fixed in sides:
                if cfg.get("pairing") != name:
                    continue
                want = {**result.cell, **fixed}
                if all(_same(cfg[k], v) for k, v in want.items() if k in cfg):
                    out.add(i)
        other = getattr(h, "other_experiment", None)
        for j, oc in enumerate(self.other_cells):  # the other side, in the other experiment's sweep
            if oc.experiment != other or oc.config.get("pairing") != h.worse:
                continue
            want = {**(h.at or {}), **result.cell, **(getattr(h, "worse_fixed", None) or {})}
            if all(_same(oc.config[k], v) for k, v in want.items() if k in oc.config):
                out.add(len(self.cells) + j)
        return out

    def wide(self, runs: pd.DataFrame) -> set[int]:
        """Cells whose accuracy interval (the first accuracy a hypothesis uses, else val_acc) is wider
        than the target half-width, or has no interval yet."""
        import pandas as pd

        from analysis.stats import bootstrap_interval
        from analysis.style import is_accuracy

        h = self.settings.target_halfwidth
        if h is None or runs.empty:
            return set()
        metric = next((x.metric for x in self.hypotheses if is_accuracy(x.metric)), "val_acc")
        done = runs[runs[SS.TAG_STATUS_REASON] == SS.STATUS_COMPLETED]
        out = set()
        for cell in range(len(self.cells)):
            values = pd.to_numeric(done.loc[done["cell"] == cell, metric], errors="coerce") if metric in done else []
            _, low, high = bootstrap_interval(list(values))
            if low != low or (high - low) / 2 > h:
                out.add(cell)
        return out

    def look(self) -> Look:
        """Answer the hypotheses from every completed replicate; queue the next wave or finish."""
        verdicts = self.verdicts()
        by_text = {h.text: h for h in self.hypotheses}
        decided, still_open, need = [], [], set()
        partners: dict[int, set[int]] = {}  # another experiment's cell -> this sweep's cells it is compared with
        cap = self.settings.max_seeds
        for r in verdicts:
            label = f"{r.text}{r.where}"
            if r.verdict in ("yes", "no", "equivalent"):
                decided.append(f"{label}: {r.verdict}")
            elif r.verdict == "inconclusive" and self.wave >= 1 and (r.seeds_needed is None or r.seeds_needed > cap):
                still_open.append(f"{label}: {_open_reason(r)}; futile at --max-seeds {cap}, no more seeds")
            elif r.verdict == "inconclusive":
                still_open.append(f"{label}: {_open_reason(r)}")
                cells = self.involved(r, by_text[r.text])
                own = {c for c in cells if c < len(self.cells)}
                need |= own
                for c in cells - own:
                    partners.setdefault(c, set()).update(own)
            else:
                still_open.append(f"{label}: not tested ({r.note})")
        need |= self.wide(self.frame())
        step = self.settings.wave_step
        queued = []
        for cell in sorted(need):
            have = self.seeds_of(cell)
            room = min(step, cap - len(have))
            top = max(have) if have else self.seeds[0] - 1
            queued += [(cell, top + 1 + k, self.wave + 1) for k in range(max(room, 0))]
        for cell, own in sorted(partners.items()):
            # The other side catches up with this side (seeds per side = the smaller side, so a
            # claim's next look needs both): at most `step` more, never past this side's count
            # after this wave, never past --max-seeds.
            have = self.seeds_of(cell)
            after = max(len(self.seeds_of(c)) + sum(1 for q in queued if q[0] == c) for c in own) if own else 0
            room = min(step, cap - len(have), after - len(have))
            top = max(have) if have else self.seeds[0] - 1
            queued += [(cell, top + 1 + k, self.wave + 1) for k in range(max(room, 0))]
        capped = sorted(c for c in need | set(partners) if len(self.seeds_of(c)) >= cap)
        note = f"{len(capped)} open cell(s) at --max-seeds {cap}" if capped else ""
        look = Look(self.wave, decided, still_open, len({c for c, _, _ in queued}), note)
        self.looks.append(look)
        if queued:
            self.wave += 1
            self.queue = self.longest_first(queued)
        else:
            self.finished = True
        return look

    # -- persistence (Searcher.save/restore) ----------------------------------------------
    def state(self) -> dict[str, Any]:
        """Plain JSON data (saved with the Tune state; JSON so a resume never unpickles a file)."""
        return {"issued": {tid: list(v) for tid, v in self.issued.items()}, "results": dict(self.results),
                "queue": [list(q) for q in self.queue], "wave": self.wave, "finished": self.finished,
                "looks": [dataclasses.asdict(x) for x in self.looks]}

    def load_state(self, state: dict[str, Any]) -> None:
        self.issued = {tid: tuple(v) for tid, v in state["issued"].items()}
        self.results = dict(state["results"])
        self.queue = [tuple(q) for q in state["queue"]]
        self.wave = int(state["wave"])
        self.finished = bool(state["finished"])
        self.looks = [Look(**x) for x in state["looks"]]

    def summary(self) -> dict[str, Any]:
        last = self.looks[-1] if self.looks else None
        return {"looks_taken": len(self.looks), "waves": self.wave + 1,
                "decided": last.decided if last else [], "open": last.open if last else [],
                "note": last.note if last else ""}


def _open_reason(r) -> str:
    from analysis.hypotheses import seeds_advice
    from analysis.sequential import fmt_confidence

    advice = seeds_advice(r)
    need = f", {advice}" if advice else ""
    return f"{r.outcome} at n={r.better[3]}/{r.worse[3]} seeds ({fmt_confidence(r.confidence)} interval){need}"

