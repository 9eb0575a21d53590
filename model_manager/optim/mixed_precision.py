"""Accuracy-aware mixed precision: which layers an INT8 model keeps in float, found by measurement.

Engine-neutral: the search sees *units* (named layers with their multiply-accumulates) and an
``evaluate(float_units) -> PSNR`` function; ``optim/qdq_float.py`` supplies both for an ONNX Q/DQ
model, and the float set it finds drives every INT8 engine (``optim/int8_steps.py``).

1. **Rank.** Each unit's sensitivity is measured quantize-all-but-one: the PSNR gained over the
   everything-INT8 model when only that unit is kept in float. A model with more units than the
   ranking budget is first ranked in contiguous groups (graph order), and the members of the most
   sensitive groups are then ranked one by one.
2. **Add back.** Float sets are prefixes of the ranking: the shortest prefix that reaches the
   target is found by doubling, then bisection (a handful of trials whatever the model's size).
3. **Give back.** Float units, most MACs first, are tried in INT8 again and stay there if the
   target still holds: one at first, then twice as many after each success, half as many after a
   failure (a unit that fails alone stays float). When most units can go back, as when the
   ranking was flat and the prefix long, this costs a few trials instead of one per unit.
4. **Per engine.** An engine whose own INT8 model misses the target with the decision's float set
   (another quantizer, other kernels) extends it along the same ranking
   (:func:`extend_float_layers`): the shortest extension that passes, found the same way, with
   its own small budget. The decision is the start of every engine; none starts from nothing.

Trials are counted and bounded (``max_trials``); the same model, data and settings give the same
choice. The result records the float units, the share of MACs left in INT8, the PSNR before and
after, the trials and the seconds it took.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from ..errors import InvalidInputError

Evaluate = Callable[[frozenset[str]], float]
GIVE_BACK = "most MACs first, galloping chunks"
"""How float units go back to INT8 (step 3): part of the build method, so of every cache key."""


@dataclass(frozen=True)
class MixedPrecisionConfig:
    """Bounds and target of the search."""

    max_trials: int = 48
    """Evaluations of a candidate float set, everything included (ranking, add back, give back)."""
    margin_db: float = 0.0
    """The search aims at gate + margin. The build scores a trial by its worst crop, which is
    margin already (the pooled PSNR the gate checks is higher)."""
    groups: int = 12
    """Contiguous groups ranked first when the model has more units than half the trials."""

    def __post_init__(self) -> None:
        if self.max_trials < 4:
            raise InvalidInputError(f"max_trials must be at least 4, got {self.max_trials}")
        if self.groups < 2:
            raise InvalidInputError(f"groups must be at least 2, got {self.groups}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Unit:
    """A layer the search may keep in float: its node name, op type and MACs per forward."""

    name: str
    op_type: str
    macs: int = 0


@dataclass
class MixedPrecision:
    """The search's answer, as the manifest records it."""

    float_layers: list[str]
    ranking: list[str]
    """Units by sensitivity, most sensitive first: an engine that needs more float layers than the
    ONNX Runtime Q/DQ model did takes the next ones from here."""
    int8_mac_share: float
    psnr_all_int8_db: float
    psnr_db: float
    target_db: float
    passed: bool
    trials: int
    seconds: float
    units: int
    macs: int = 0
    history: list[tuple[int, float]] = field(default_factory=list)
    """(float layers, PSNR) of every trial, in order."""
    started_float: list[str] = field(default_factory=list)
    """Units float from the start by rule (sampling coordinates), not by measurement."""
    unit_macs: dict[str, int] = field(default_factory=dict)
    """MACs of each unit with any (an engine's extended set reports its own INT8 share from them)."""

    def mac_share(self, floats: Sequence[str]) -> float:
        """The share of MACs in INT8 with ``floats`` kept in float."""
        total = sum(self.unit_macs.values())
        if not total:
            return self.int8_mac_share
        return round(1 - sum(self.unit_macs.get(n, 0) for n in set(floats)) / total, 4)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> MixedPrecision:
        return cls(**_with_history(data))

    def summary(self) -> str:
        """One line: float layers, INT8 share of MACs, PSNR before -> after."""
        return (
            f"{len(self.float_layers)} of {self.units} layers in float, "
            f"{100 * self.int8_mac_share:.1f}% of MACs in INT8, "
            f"{self.psnr_all_int8_db:.1f} -> {self.psnr_db:.1f} dB "
            f"({self.trials} trials, {self.seconds:.1f} s)"
        )


def _with_history(data: dict[str, Any]) -> dict[str, Any]:
    """A result read back from JSON, its trial history as (float layers, PSNR) tuples again."""
    return {**data, "history": [tuple(h) for h in data.get("history", [])]}


class _Trials:
    """Memoised, counted evaluations of float sets."""

    def __init__(self, evaluate: Evaluate, limit: int) -> None:
        self.evaluate, self.limit = evaluate, limit
        self.seen: dict[frozenset[str], float] = {}
        self.history: list[tuple[int, float]] = []

    @property
    def left(self) -> int:
        return self.limit - len(self.history)

    def __call__(self, floats: frozenset[str]) -> float:
        if floats not in self.seen:
            if self.left <= 0:
                raise _OutOfTrials
            psnr = float(self.evaluate(floats))
            self.seen[floats] = psnr
            self.history.append((len(floats), round(psnr, 3)))
        return self.seen[floats]


class _OutOfTrials(Exception):
    pass


def search_float_layers(
    units: Sequence[Unit],
    evaluate: Evaluate,
    target_db: float,
    config: MixedPrecisionConfig | None = None,
    start: Sequence[str] = (),
) -> MixedPrecision:
    """The float set (few layers, most MACs in INT8) whose model reaches ``target_db``; see module doc.

    ``start``: units that are float in every trial (a rule, not a measurement: sampling coordinates,
    ``qdq_float.QdqModel.coordinate_units``); the search chooses among the others.
    """
    config = config or MixedPrecisionConfig()
    if len({u.name for u in units}) != len(units):
        raise InvalidInputError("unit names must be unique")
    started = time.perf_counter()
    fixed = frozenset(start)
    if fixed:
        everything_int8 = float(evaluate(frozenset()))  # "before", as without a start
        rest = [u for u in units if u.name not in fixed]
        within = replace(config, max_trials=max(4, config.max_trials - 1))  # the trial above counts
        result = search_float_layers(rest, lambda f: evaluate(f | fixed), target_db, within)
        result.psnr_all_int8_db, result.trials = round(everything_int8, 3), result.trials + 1
        result.seconds = round(time.perf_counter() - started, 2)
        return _with_start(result, units, fixed)
    trials = _Trials(evaluate, config.max_trials)
    base = trials(frozenset())
    chosen: frozenset[str] = frozenset()
    ranking: list[frozenset[str]] = []
    if base < target_db and units:
        try:
            ranking = _rank(units, trials, base, config)
            chosen = _shortest_prefix(ranking, trials, target_db)
            chosen = _give_back(chosen, units, trials, target_db)
        except _OutOfTrials:
            chosen = _best_seen(trials, target_db)
    psnr = trials.seen.get(chosen, base)
    return _result(units, chosen, ranking, trials, base, psnr, target_db, started)


def _rank(
    units: Sequence[Unit], trials: _Trials, base: float, config: MixedPrecisionConfig
) -> list[frozenset[str]]:
    """Items (one unit, or a group of contiguous units) by gain over ``base``, largest first."""
    budget = config.max_trials // 2
    if len(units) <= budget:
        return _by_gain([frozenset([u.name]) for u in units], units, trials, base)
    size = math.ceil(len(units) / config.groups)
    groups = [frozenset(u.name for u in units[i : i + size]) for i in range(0, len(units), size)]
    ranked = _by_gain(groups, units, trials, base)
    spare = budget - len(groups)
    items: list[frozenset[str]] = []
    for group in ranked:  # split the most sensitive groups while the ranking budget allows
        members = [u for u in units if u.name in group]
        if 0 < len(members) <= spare and _gain(group, trials, base) > 0:
            items += _by_gain([frozenset([u.name]) for u in members], units, trials, base)
            spare -= len(members)
        else:
            items.append(group)
    return sorted(items, key=lambda it: _order_key(it, units, trials, base))


def _gain(item: frozenset[str], trials: _Trials, base: float) -> float:
    return trials.seen.get(item, base) - base


def _by_gain(
    items: list[frozenset[str]], units: Sequence[Unit], trials: _Trials, base: float
) -> list[frozenset[str]]:
    for item in items:
        trials(item)
    return sorted(items, key=lambda it: _order_key(it, units, trials, base))


def _order_key(
    item: frozenset[str], units: Sequence[Unit], trials: _Trials, base: float
) -> tuple[float, int, int]:
    """Largest gain first; then fewer MACs; then graph order (deterministic)."""
    position = {u.name: i for i, u in enumerate(units)}
    macs = sum(u.macs for u in units if u.name in item)
    return (-round(_gain(item, trials, base), 3), macs, min(position[n] for n in item))


def _prefix(ranking: list[frozenset[str]], k: int) -> frozenset[str]:
    return frozenset().union(*ranking[:k])


def _shortest_prefix(ranking: list[frozenset[str]], trials: _Trials, target_db: float) -> frozenset[str]:
    """The shortest ranking prefix reaching the target: doubling, then bisection."""
    lo, hi = 0, 1
    while hi < len(ranking) and trials(_prefix(ranking, hi)) < target_db:
        lo, hi = hi, min(2 * hi, len(ranking))
    if trials(_prefix(ranking, hi)) < target_db:
        raise _OutOfTrials  # even keeping everything ranked in float does not reach it
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if trials(_prefix(ranking, mid)) >= target_db:
            hi = mid
        else:
            lo = mid
    return _prefix(ranking, hi)


def _give_back(
    chosen: frozenset[str], units: Sequence[Unit], trials: _Trials, target_db: float
) -> frozenset[str]:
    """Float units back to INT8 while the target holds, most MACs first, in galloping chunks
    (doubled after a success, halved after a failure; a unit that fails alone stays float)."""
    macs = {u.name: u.macs for u in units}
    position = {u.name: i for i, u in enumerate(units)}
    order = sorted(chosen, key=lambda n: (-macs[n], position[n]))
    i, step = 0, 1
    while i < len(order) and len(chosen) > 1 and trials.left > 0:
        chunk = frozenset(order[i : i + min(step, len(chosen) - 1)])
        if trials(chosen - chunk) >= target_db:
            chosen, i, step = chosen - chunk, i + len(chunk), step * 2
        elif len(chunk) > 1:
            step = max(1, len(chunk) // 2)
        else:
            i += 1
    return chosen


def _best_seen(trials: _Trials, target_db: float) -> frozenset[str]:
    """Out of trials: the smallest passing set seen, else the best-scoring one."""
    passing = [s for s, p in trials.seen.items() if p >= target_db]
    if passing:
        return min(passing, key=lambda s: (len(s), sorted(s)))
    return max(trials.seen, key=lambda s: (trials.seen[s], -len(s)))


def _with_start(result: MixedPrecision, units: Sequence[Unit], fixed: frozenset[str]) -> MixedPrecision:
    """A result over the non-fixed units, restated over all units (the fixed ones float, first)."""
    order = [u.name for u in units]
    floats = set(result.float_layers) | fixed
    total = sum(u.macs for u in units)
    int8 = sum(u.macs for u in units if u.name not in floats)
    result.float_layers = [n for n in order if n in floats]
    result.ranking = [n for n in order if n in fixed] + result.ranking
    result.int8_mac_share = round(int8 / total, 4) if total else 1.0
    result.units, result.macs, result.started_float = len(units), total, sorted(fixed, key=order.index)
    result.unit_macs = _unit_macs(units)
    return result


def _unit_macs(units: Sequence[Unit]) -> dict[str, int]:
    return {u.name: u.macs for u in units if u.macs}


def _result(
    units: Sequence[Unit],
    chosen: frozenset[str],
    ranking: list[frozenset[str]],
    trials: _Trials,
    base: float,
    psnr: float,
    target_db: float,
    started: float,
) -> MixedPrecision:
    total = sum(u.macs for u in units)
    int8 = sum(u.macs for u in units if u.name not in chosen)
    order = [u.name for u in units]
    ranked = [n for item in ranking for n in sorted(item, key=order.index)]
    return MixedPrecision(
        float_layers=[n for n in order if n in chosen],
        ranking=ranked + [n for n in order if n not in set(ranked)],
        int8_mac_share=round(int8 / total, 4) if total else 1.0,
        psnr_all_int8_db=round(base, 3),
        psnr_db=round(psnr, 3),
        target_db=target_db,
        passed=psnr >= target_db,
        trials=len(trials.history),
        seconds=round(time.perf_counter() - started, 2),
        units=len(units),
        macs=total,
        history=list(trials.history),
        unit_macs=_unit_macs(units),
    )


@dataclass
class EngineFloatLayers:
    """One engine's float set: the decision's, extended along its ranking until the engine passes."""

    engine: str
    float_layers: list[str]
    added: list[str]
    """Units beyond the decision's float layers, in ranking order (empty: the decision held)."""
    psnr_decision_db: float
    """The engine's PSNR with the decision's float set as it is."""
    psnr_db: float
    target_db: float
    passed: bool
    trials: int
    seconds: float
    int8_mac_share: float
    """The share of MACs this engine keeps in INT8."""
    history: list[tuple[int, float]] = field(default_factory=list)
    applied: list[str] = field(default_factory=list)
    """The engine's own names for its float layers, where they differ (NNCF ignored-scope patterns)."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EngineFloatLayers:
        return cls(**_with_history(data))

    def summary(self) -> str:
        if not self.added:
            return f"{self.engine}: the decision's float layers hold ({self.psnr_db:.1f} dB)"
        return (
            f"{self.engine}: {len(self.added)} more layer(s) in float, {self.psnr_decision_db:.1f} -> "
            f"{self.psnr_db:.1f} dB ({self.trials} trials, {self.seconds:.1f} s)"
        )


def extend_float_layers(
    engine: str,
    decision: MixedPrecision,
    evaluate: Evaluate,
    max_trials: int = 8,
    applies: Callable[[str], bool] | None = None,
) -> EngineFloatLayers:
    """The decision's float set plus the shortest prefix of the rest of its ranking with which
    ``evaluate`` (one engine's INT8 model) reaches the decision's target, then what of that prefix
    goes back to INT8 with the target still held (most MACs first, while trials last).

    ``applies``: whether a unit means anything to this engine (a functional op has no module to
    keep in float in PyTorch FX); units that do not are skipped, not spent trials on. Out of
    trials, or failing with every ranked unit float: the smallest passing set seen, else the best.
    """
    started = time.perf_counter()
    base = frozenset(decision.float_layers)
    rest = [n for n in decision.ranking if n not in base and (applies is None or applies(n))]
    trials = _Trials(lambda extra: evaluate(base | extra), max(2, max_trials))
    first = trials(frozenset())
    chosen: frozenset[str] = frozenset()
    if first < decision.target_db and rest:
        try:
            chosen = _shortest_prefix([frozenset([n]) for n in rest], trials, decision.target_db)
            units = [Unit(n, "", decision.unit_macs.get(n, 0)) for n in rest]
            chosen = _give_back(chosen, units, trials, decision.target_db)
        except _OutOfTrials:
            chosen = _best_seen(trials, decision.target_db)
    psnr = trials.seen[chosen]
    order = {n: i for i, n in enumerate(decision.ranking)}
    added = sorted(chosen, key=order.__getitem__)
    floats = [*decision.float_layers, *added]
    return EngineFloatLayers(
        engine=engine,
        float_layers=floats,
        added=added,
        psnr_decision_db=round(first, 3),
        psnr_db=round(psnr, 3),
        target_db=decision.target_db,
        passed=psnr >= decision.target_db,
        trials=len(trials.history),
        seconds=round(time.perf_counter() - started, 2),
        int8_mac_share=decision.mac_share(floats),
        history=list(trials.history),
    )
