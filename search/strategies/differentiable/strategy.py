"""``differentiable``: a supernet with a hardware-aware loss, λ calibrated to the budget.

One search, in rounds (one round = one trial of the search):

1. ``setup``: the lookup table gets every layer op the supernet can produce (one
   ``table.ensure``, one lease); the supernet
   (``search.strategies.differentiable.supernet``) is built.
2. Round 0 trains it (``supernet_training``): weights on the task loss, α on ``L_task +
   λ·(E[lat]/T - 1)`` with E[lat] the exact expectation of the table's prediction, λ by dual
   ascent on ``E[lat] <= T``, ``T = 0.9·budget / ratio`` in table units.
3. Derivation (``derive``): the most probable architecture whose corrected prediction
   ``ratio·table`` lies in [0.85, 0.95]·budget, else [0.8, 1.0]·budget, else the closest
   below; within the analytic limits, and not proposed by an earlier round. With an energy
   budget too (``+ λ_en·(E[energy]/T_en - 1)`` in the loss, λ_en by its own dual ascent,
   ``T_en = 0.9·energy budget / energy ratio``): never over the energy budget, and one in
   the bands of both budgets first.
4. The search trains it from scratch and measures it. ``ratio`` becomes the median of
   measured / table over the rounds so far and 1.0 (the table itself); the next round
   warm-starts the supernet for fewer epochs and derives again. The search ends at the
   first round measured within [0.8, 1.0]·budget (of each budget in the loss), or after
   ``trials``.

With ``fixed_lambda`` (``--lambda X``) there is no calibration: ``L = L_task + λ·E[lat_ms]``
(the seed's ``θ <- θ - (α1·∇L + α2·∇L_h)`` with ``λ = α2/α1``), one round, the most probable
architecture within the limits; a budget is only checked on the measurement.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import asdict, dataclass, replace
from typing import TYPE_CHECKING, Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from ... import records
from ...cost import cost
from ...errors import SettingsError
from ...predict.ops import OVERHEAD, Op, candidate_ops
from ...settings import MeasuredFigures
from ...space import Candidate, SearchSpace
from ..base import SearchContext, Strategy
from .derive import Derived, DerivedGenesSampler, derive
from .lambda_trace import LambdaTrace
from .stages import StageMacro
from .supernet import CostModel, Macro, Positions
from .training import DualSettings, SupernetTrainer

if TYPE_CHECKING:
    from collections.abc import Callable

    from ...predict.table import LatencyTable
    from ...records import TrialRecord

AIM = 0.9  #: the fraction of the budget the dual ascent aims E[latency] at
BAND = (0.8, 1.0)  #: a measured round in this fraction of the budget ends the search
INNER_BAND = (0.85, 0.95)  #: preferred at derivation: room for the board's noise
MIN_EPOCHS = 3  #: supernet epochs of round 0 at least (default: the candidates' epochs)


@dataclass(frozen=True)
class _Setup:
    """What setup() builds: kept for the whole search."""

    context: SearchContext
    macro: Positions
    latency: CostModel
    energy: CostModel | None
    trainer: SupernetTrainer
    trace: LambdaTrace


@dataclass
class Round:
    """One derivation and its measurement."""

    index: int
    candidate: str
    hash: str
    how: str  #: which tier of the derivation chose it (inner band, band, below band, argmax)
    table_ms: float  #: the table's prediction (overhead + sum of layers)
    ratio: float  #: the correction it was derived with
    predicted_ms: float  #: table_ms x ratio
    latency_aim_ms: float | None  #: the dual ascent's aim, corrected units (aim x budget)
    log_prob: float
    start_step: int
    end_step: int
    table_energy_mj: float | None = None
    predicted_energy_mj: float | None = None
    trial: int | None = None
    outcome: str | None = None
    measured_ms: float | None = None
    measured_energy_mj: float | None = None
    #: within every budget as the loop judged the measurement (its rounds' verdict on the
    #: latency budget included: an undecided one is not); None in an older trace
    feasible: bool | None = None


class DifferentiableStrategy(Strategy):
    """Supernet search with ``L = L_task + λ·E[latency]``; λ by dual ascent, or fixed."""

    name = "differentiable"
    needs_table = True
    #: the supernet's expected latency is one board's table: one target per search
    several_targets = False
    #: the predictor records its prediction beside each round's measurement; it skips a
    #: round only if it puts it far over budget (then the next round derives another)
    predictor_default = True

    def __init__(
        self,
        *,
        seed: int | None = 0,
        fixed_lambda: float | None = None,
        epochs: int | None = None,
        warm_epochs: int | None = None,
        dual: DualSettings | None = None,
    ) -> None:
        super().__init__(seed=seed)
        if fixed_lambda is not None and not (math.isfinite(fixed_lambda) and fixed_lambda >= 0):
            raise SettingsError(f"--lambda must be a finite number >= 0, got {fixed_lambda!r}")
        for name, value in (("epochs", epochs), ("warm_epochs", warm_epochs)):
            if value is not None and value < 1:
                raise SettingsError(f"supernet {name} must be >= 1, got {value}")
        self.fixed_lambda = fixed_lambda
        self.epochs, self.warm_epochs = epochs, warm_epochs
        self.dual = dual or DualSettings()
        self._sampler = DerivedGenesSampler()
        self._setup: _Setup | None = None
        self.rounds: list[Round] = []
        self._pending: Round | None = None
        self._tried: set[str] = set()
        #: measured / table-predicted, per measured round (latency, energy)
        self._ratios: list[float] = []
        self._energy_ratios: list[float] = []
        self._exhausted = False
        self._replayed = False
        self.table_ops_measured = 0  #: one-layer models the table measured for this search

    # -- the Strategy interface -------------------------------------------------------------

    def sampler(self, trials: int, space: SearchSpace) -> optuna.samplers.BaseSampler:
        return self._sampler

    def options(self) -> dict[str, Any]:
        return {
            "lambda": self.fixed_lambda,
            "epochs": self.epochs,
            "warm_epochs": self.warm_epochs,
            "aim": AIM,
            "band": list(BAND),
            **asdict(self.dual),
        }

    def describe(self) -> str:
        if self.fixed_lambda is not None:
            return f"{self.name} (λ = {self.fixed_lambda:g} fixed)"
        return f"{self.name} (λ auto, dual ascent, seed {self.seed})"

    def setup(self, context: SearchContext) -> None:
        settings = context.settings
        budgets = settings.budgets
        if self.fixed_lambda is None and budgets.latency_ms is None:
            raise SettingsError(
                "--strategy differentiable calibrates λ to a latency budget: give one "
                "(--latency-budget-ms / budgets={'latency_ms': ...}), or a fixed --lambda"
            )
        table = context.table
        if table is None:
            raise SettingsError("--strategy differentiable needs the measured lookup table")
        # the flat space's positions of layers, or the stage space's of blocks
        macro: Positions = (
            Macro(context.space) if context.space.stage_space is None else StageMacro(context.space)
        )
        self.table_ops_measured = table.ensure([*macro.layer_ops(), OVERHEAD], context.board)
        latency = CostModel(macro, table.layer_ms, table.overhead_ms())
        energy = None
        if budgets.energy_mj is not None:  # energy is in the loss: every layer needs its own
            energy = CostModel(macro, *_energy_of(table, macro))
        seed = self.seed if self.seed is not None else settings.seed
        trainer = SupernetTrainer(
            macro,
            context.data,
            settings.train,
            seed=seed,
            latency=latency,
            energy=energy,
            dual=self.dual,
            fixed_lambda=self.fixed_lambda,
        )
        trace = LambdaTrace(
            context.out,
            {
                "strategy": self.describe(),
                "lambda_mode": "fixed" if self.fixed_lambda is not None else "auto",
                "fixed_lambda": self.fixed_lambda,
                "latency_budget_ms": budgets.latency_ms,
                "energy_budget_mj": budgets.energy_mj,
                "latency_stat": settings.latency_stat,
                "aim": AIM,
                "band": list(BAND),
                "architectures": macro.architectures,
                "table_ops": len(macro.layer_ops()) + 1,
                "table_ops_measured": self.table_ops_measured,
            },
        )
        self._setup = _Setup(context, macro, latency, energy, trainer, trace)

    def propose(self, trial: optuna.Trial, space: SearchSpace) -> Candidate:
        self._replay(trial.study)
        rnd = self._pending if self._pending is not None else self._next_round()
        candidate = Candidate.decode(rnd.candidate)
        self._sampler.genes = self._ready.macro.genes(candidate)
        values = {n: trial.suggest_categorical(n, list(c)) for n, c in space.genes.items()}
        proposed = space.decode(values)
        if proposed.hash != rnd.hash:  # genes fixed for this trial (a resume redoes one)
            rnd = self._adopt(rnd, proposed)
        rnd.trial = trial.number
        trial.set_user_attr("supernet_round", rnd.index)
        trial.set_user_attr("predicted_ms", rnd.predicted_ms)
        self._pending = rnd
        self._write()
        return proposed

    def after_trial(self, trial: FrozenTrial, record: TrialRecord) -> None:
        rnd = self._pending
        if rnd is None or rnd.trial != record.number:
            return
        rnd.outcome = record.outcome
        if record.outcome == records.FAILED and (record.reason or "").startswith("measurement"):
            self._write()  # the board failed: the same candidate is proposed again
            return
        self._pending = None
        self._tried.add(rnd.hash)
        if record.outcome in (records.MEASURED, records.DUPLICATE) and record.latency_ms:
            rnd.measured_ms, rnd.measured_energy_mj = record.latency_ms, record.energy_mj
            rnd.feasible = record.feasible
            if rnd.table_ms > 0:
                self._ratios.append(record.latency_ms / rnd.table_ms)
            if record.energy_mj and rnd.table_energy_mj:
                self._energy_ratios.append(record.energy_mj / rnd.table_energy_mj)
        self._write()

    def finished(self, records: list[TrialRecord]) -> bool:
        if self._exhausted:
            return True
        measured = [r for r in self.rounds if r.measured_ms is not None]
        if not measured:
            return False
        if self.fixed_lambda is not None:
            return True
        return self._in_band(measured[-1])

    # -- rounds ------------------------------------------------------------------------------

    @property
    def _ratio(self) -> float:
        """The correction of the table's latency: the median of measured / predicted over
        the rounds measured so far, with the table's own 1.0 as one more value. A median,
        because a whole-model measurement on a small machine is now and then a speed state
        off (0.6x on local): one such round must not steer the next; a bias that every
        round shows still wins from the second round on."""
        return _median([1.0, *self._ratios])

    @property
    def _energy_ratio(self) -> float:
        return _median([1.0, *self._energy_ratios])

    def _in_band(self, rnd: Round) -> bool:
        """Measured within the band of the latency budget, within the band of the energy
        budget where energy is in the loss, and within every budget (an energy budget the
        round has no measured energy for is not met, nor a latency budget its rounds left
        undecided: the search goes on)."""
        budgets = self._ready.context.settings.budgets
        latency_budget_ms = budgets.latency_ms
        assert latency_budget_ms is not None
        assert rnd.measured_ms is not None
        low, high = BAND[0] * latency_budget_ms, BAND[1] * latency_budget_ms
        measured = MeasuredFigures(rnd.measured_ms, rnd.measured_energy_mj)
        if not low <= rnd.measured_ms <= high or budgets.violations(measured):
            return False
        if rnd.feasible is False:  # e.g. undecided: its interval straddles the budget
            return False
        if budgets.energy_mj is None or self._ready.energy is None:
            return True
        return BAND[0] * budgets.energy_mj <= (rnd.measured_energy_mj or 0.0)

    def _next_round(self) -> Round:
        ready = self._ready
        trainer, settings = ready.trainer, ready.context.settings
        latency_budget_ms = settings.budgets.latency_ms
        energy_budget_mj = settings.budgets.energy_mj
        first = not self.rounds
        epochs = self.epochs or max(MIN_EPOCHS, settings.train.epochs)
        if not first:
            epochs = self.warm_epochs or max(1, epochs // 3)
        aim = None  # table units
        if latency_budget_ms and self.fixed_lambda is None:
            aim = AIM * latency_budget_ms / self._ratio
        energy_aim = None
        if energy_budget_mj is not None and ready.energy is not None and self.fixed_lambda is None:
            energy_aim = AIM * energy_budget_mj / self._energy_ratio
        start = trainer.arch_steps
        trainer.run(
            epochs,
            round_index=len(self.rounds),
            anneal=first,
            warmup_epochs=max(1, epochs // 3) if first and epochs > 1 else 0,
            latency_aim_ms=aim,
            energy_aim_mj=energy_aim,
            ratio=self._ratio,
            on_step=ready.trace.steps.append,
        )
        # every architecture over an analytic limit: one is proposed all the same, and the
        # search records it pruned by that limit (then this strategy stops)
        derived = self._derive(latency_budget_ms, energy_budget_mj) or self._derive(
            latency_budget_ms, energy_budget_mj, limits=False
        )
        if derived is None or derived.how == "over a limit":
            self._exhausted = True
        if derived is None:  # every architecture was proposed: repeat the last, then stop
            last = self.rounds[-1]
            derived = Derived(
                Candidate.decode(last.candidate), last.table_ms, last.log_prob, "repeat", None
            )
        rnd = Round(
            index=len(self.rounds),
            candidate=derived.candidate.encode(),
            hash=derived.candidate.hash,
            how=derived.how,
            table_ms=derived.table_ms,
            ratio=self._ratio,
            predicted_ms=derived.table_ms * self._ratio,
            latency_aim_ms=aim * self._ratio if aim is not None else None,
            log_prob=derived.log_prob,
            start_step=start,
            end_step=max(start, trainer.arch_steps - 1),
            table_energy_mj=derived.energy_mj,
            predicted_energy_mj=(
                derived.energy_mj * self._energy_ratio if derived.energy_mj is not None else None
            ),
        )
        self.rounds.append(rnd)
        return rnd

    def _derive(
        self,
        latency_budget_ms: float | None,
        energy_budget_mj: float | None,
        *,
        limits: bool = True,
    ) -> Derived | None:
        ready = self._ready

        def accept(candidate: Candidate) -> bool:
            if candidate.hash in self._tried:
                return False
            return not limits or ready.context.limits.violated(cost(candidate)) is None

        bands = None
        if latency_budget_ms is not None and self.fixed_lambda is None:
            bands = [
                (name, lo * latency_budget_ms / self._ratio, hi * latency_budget_ms / self._ratio)
                for name, (lo, hi) in (("inner band", INNER_BAND), ("band", BAND))
            ]
        energy_max = energy_bands = None
        if energy_budget_mj is not None and ready.energy is not None:
            energy_max = energy_budget_mj / self._energy_ratio
            if bands is not None:  # both budgets in the loss: the band of both comes first
                energy_bands = [(lo * energy_max, hi * energy_max) for lo, hi in (INNER_BAND, BAND)]
        derived = derive(
            ready.macro,
            ready.trainer.log_probs(),
            ready.latency,
            bands=bands,
            accept=accept,
            energy=ready.energy,
            energy_max=energy_max,
            energy_bands=energy_bands,
        )
        if derived is not None and not limits:
            derived = replace(derived, how="over a limit")
        return derived

    def _adopt(self, rnd: Round, candidate: Candidate) -> Round:
        """The trial's genes were fixed before it was proposed (a resume redoes a trial a
        killed process left): the round measures that candidate, predicted by the table."""
        table = self._ready.context.table
        assert table is not None
        rnd.candidate, rnd.hash, rnd.how = candidate.encode(), candidate.hash, "fixed genes"
        rnd.table_ms = float(table.sum_ms(candidate_ops(candidate)))
        rnd.predicted_ms = rnd.table_ms * rnd.ratio
        return rnd

    def _replay(self, study: optuna.Study) -> None:
        """On a resume, redo the rounds the study already holds (training is seeded, so the
        supernet comes back to the same state) and feed them their recorded outcomes."""
        if self._replayed:
            return
        self._replayed = True
        done = [
            t
            for t in study.get_trials(deepcopy=False)
            if t.state != TrialState.RUNNING
            and "supernet_round" in t.user_attrs
            and "outcome" in t.user_attrs
        ]
        for t in sorted(done, key=lambda t: t.number):
            rnd = self._pending if self._pending is not None else self._next_round()
            record = records.TrialRecord.from_attrs(t.number, t.user_attrs, None)
            if record.hash != rnd.hash:
                rnd = self._adopt(rnd, Candidate.decode(record.candidate))
            rnd.trial = t.number
            self._pending = rnd
            self.after_trial(t, record)

    def _write(self) -> None:
        trace = self._ready.trace
        trace.rounds = [asdict(r) for r in self.rounds]
        trace.write()

    @property
    def _ready(self) -> _Setup:
        if self._setup is None:
            raise SettingsError("the differentiable strategy was used before setup()")
        return self._setup


def _energy_of(table: LatencyTable, macro: Positions) -> tuple[Callable[[Op], float], float]:
    """(each layer op's energy, the overhead's) from the table; SettingsError when any of
    them has none (the board's meter gave no figure for it): a missing energy is never 0."""
    ops = macro.layer_ops()
    overhead = table.overhead_energy_mj()
    missing = [op for op in ops if table.layer_energy_mj(op) is None]
    if overhead is None or missing:
        lacking = len(ops) + 1 if overhead is None else len(missing)
        raise SettingsError(
            "--strategy differentiable puts energy in its loss for an energy budget, and the "
            f"latency table has no energy for {lacking} of its {len(ops) + 1} layer ops (the "
            "board's power meter gave no figure for them): drop the energy budget, or "
            "measure on a board whose meter reports energy for one-layer models"
        )

    def layer_energy_mj(op: Op) -> float:
        value = table.layer_energy_mj(op)
        assert value is not None  # checked above for every op of the macro
        return value

    return layer_energy_mj, overhead


def _median(values: list[float]) -> float:
    return float(statistics.median(values))


__all__ = ["DerivedGenesSampler", "DifferentiableStrategy", "Round"]
