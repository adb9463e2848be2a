"""Which onnxruntime execution provider a board measures candidates on, chosen by measurement.

A board's onnxruntime may offer several providers (CPU, CUDA, TensorRT, an NPU's); which one
is fastest for the search's models is a property of the board *and* the model size, so it
is measured, not guessed: a representative candidate of the space (:func:`probe_model`) is
timed on each provider in interleaved rounds and the fastest kept, CPU unless another beats
it by a margin. A board whose config fixes ``bench.provider`` is taken at its word, and the
usual CPU-only board needs no measurement at all. The :class:`ProviderChoice` says which
provider, why, and what each trial measured, for the run's records.
"""

from __future__ import annotations

import json
import random
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from hwnas_bench import BenchFailure, BoardFacts

from ..build import build
from ..errors import SearchError, SettingsError, SpaceError
from ..files import write_file
from ..measure import Board
from ..onnx_export import to_onnx
from ..space import Candidate, SearchSpace

CPU = "CPUExecutionProvider"

#: Providers that do not run the model on the board, so their timings say nothing about it:
#: the Azure EP (in every onnxruntime wheel since 1.16) sends the inputs to a cloud endpoint
#: when configured for one, and otherwise leaves every node to the CPU provider: timed
#: without an endpoint it is the CPU again under another name.
NOT_COMPUTE = frozenset({"AzureExecutionProvider"})

#: classes of the probe's classifier when the space does not know them yet (labels decide
#: them at search time); the final linear layer is a small share of a candidate's time
PROBE_CLASSES = 10

_RANDOM_TRIES = 1000  # random draws for a valid probe when the middle candidate is not


def offered(facts: Mapping[str, Any]) -> list[str]:
    """The board's compute providers (its hello's ``providers``), in its order."""
    return [p for p in BoardFacts.from_mapping(facts).providers if p not in NOT_COMPUTE]


@dataclass(frozen=True)
class ProviderTrial:
    """One provider's outcome: the median over rounds of each round's p50, or the error
    (first line) that stopped it. Exactly one of the two is None."""

    provider: str
    latency_ms: float | None
    error: str | None

    def to_dict(self) -> dict[str, Any]:
        return {"provider": self.provider, "latency_ms": self.latency_ms, "error": self.error}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ProviderTrial:
        latency = data.get("latency_ms")
        return cls(
            provider=str(data["provider"]),
            latency_ms=None if latency is None else float(latency),
            error=None if data.get("error") is None else str(data["error"]),
        )


@dataclass(frozen=True)
class ProviderChoice:
    """The provider chosen for a board, why, and the trials behind it (empty when nothing
    was measured: fixed by the config, or the only one offered)."""

    provider: str
    reason: str
    tried: tuple[ProviderTrial, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "provider": self.provider,
            "reason": self.reason,
            "tried": [t.to_dict() for t in self.tried],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ProviderChoice:
        return cls(
            provider=str(data["provider"]),
            reason=str(data["reason"]),
            tried=tuple(ProviderTrial.from_dict(t) for t in data.get("tried") or ()),
        )


def _middle(choices: Sequence[Any]) -> Any:
    """The middle value (the upper one of an even count), in sorted order for numbers."""
    values = sorted(choices) if all(isinstance(v, int) for v in choices) else list(choices)
    return values[len(values) // 2]


def probe_candidate(space: SearchSpace, seed: int = 0) -> Candidate:
    """The middle of the space: the middle choice of every numeric gene and the middle
    depth, with the layer types taken in turn so the probe holds each kind the space has.

    Why the middle and not the largest: an accelerator's per-call overhead and copies pay
    off on big models and cost on small ones, so the largest candidate would favour it for a
    search whose candidates are mostly smaller; the middle is what a search measures most.
    If that candidate is invalid (its pools shrink the input below 1x1), the first valid
    one of seeded random draws is taken instead."""
    if space.num_classes is None:
        space = space.with_classes(PROBE_CLASSES)
    kinds = [t for t in space.layer_types if t != "skip"] or ["skip"]
    genes: dict[str, Any] = {}
    for name, choices in space.genes.items():
        if name.endswith("_type"):
            genes[name] = kinds[int(name[1:].split("_")[0]) % len(kinds)]
        else:
            genes[name] = _middle(choices)
    candidate = space.decode(genes)
    if candidate.is_valid():
        return candidate
    rng = random.Random(seed)
    for _ in range(_RANDOM_TRIES):
        drawn = space.decode({n: rng.choice(c) for n, c in space.genes.items()})
        if drawn.is_valid():
            return drawn
    raise SpaceError(
        f"no valid candidate for a provider probe in {_RANDOM_TRIES} draws of the space "
        f"(the middle one, {candidate}, shrinks the input below 1x1)"
    )


def probe_model(space: SearchSpace, seed: int = 0) -> bytes:
    """ONNX bytes of :func:`probe_candidate` with untrained weights (fine for timing)."""
    return to_onnx(build(probe_candidate(space, seed), seed=seed))


def _first_line(error: BaseException | str) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def _fixed_by_config(board: Board) -> str | None:
    # read defensively: TargetSpec.bench is new and may be missing on an older checkout
    table = getattr(board.spec, "bench", None) or {}
    provider = table.get("provider") if isinstance(table, Mapping) else None
    return str(provider) if provider else None


def pick(trials: Sequence[ProviderTrial], margin: float) -> tuple[str, str]:
    """(provider, reason) from measured trials: the fastest, except that CPU is kept unless
    the fastest beats it by more than ``margin`` (a fraction of CPU's time)."""
    measured = [t for t in trials if t.latency_ms is not None]
    if not measured:
        errors = "; ".join(f"{t.provider}: {t.error}" for t in trials)
        raise SearchError(f"no execution provider could run the probe model ({errors})")
    fastest = min(measured, key=lambda t: t.latency_ms or 0.0)
    assert fastest.latency_ms is not None
    cpu = next((t for t in measured if t.provider == CPU), None)
    if len(measured) == 1:
        others = ", ".join(t.provider for t in trials if t is not fastest)
        return fastest.provider, f"the only one that ran the probe model ({others} failed)"
    if cpu is None or fastest is cpu:
        return fastest.provider, (
            f"fastest on the probe model: {fastest.provider} {fastest.latency_ms:.4g} ms p50"
        )
    assert cpu.latency_ms is not None
    gain = 1.0 - fastest.latency_ms / cpu.latency_ms
    versus = (
        f"{fastest.provider} {fastest.latency_ms:.4g} ms vs {CPU} {cpu.latency_ms:.4g} ms p50 "
        f"on the probe model, {gain:.1%} faster"
    )
    if gain > margin:
        return fastest.provider, f"{versus} (more than the {margin:.0%} margin)"
    return CPU, f"{CPU} kept: {versus}, within the {margin:.0%} margin"


def _unique(providers: Sequence[str]) -> list[str]:
    out: list[str] = []
    for p in providers:
        if p not in out and p not in NOT_COMPUTE:
            out.append(p)
    return out


def choose_provider(
    board: Board,
    probe: bytes,
    *,
    candidates: Sequence[str] | None = None,
    rounds: int = 3,
    margin: float = 0.03,
) -> ProviderChoice:
    """The execution provider ``board`` should measure candidates on.

    The board's config fixes it (``bench.provider``): that one, unmeasured. One candidate
    (the usual CPU-only board): that one, unmeasured. Several: ``probe`` is measured on each
    in ``rounds`` interleaved rounds (A B C, A B C, ...; the machine's slow spells then fall
    on all of them alike), each keeping the median of its rounds' p50; a provider that fails
    is recorded with its error and not tried again; :func:`pick` decides. ``candidates``
    replaces the board's offered providers. Errors of the board itself (it cannot be leased
    or reached) are raised as they are: they say nothing about a provider.

    :raises SettingsError: the config fixes a provider the board's onnxruntime lacks, or
        bad ``rounds``/``margin``.
    :raises SearchError: no candidate provider, or every one failed (each error named).
    """
    if not isinstance(rounds, int) or rounds < 1:
        raise SettingsError(f"provider rounds must be an integer >= 1, got {rounds!r}")
    if not 0.0 <= margin < 1.0:
        raise SettingsError(f"provider margin must be a fraction in [0, 1), got {margin!r}")
    if not board.facts:
        board.connect()
    available = list(board.facts.providers)
    fixed = _fixed_by_config(board)
    if fixed is not None:
        where = getattr(board.spec, "source", None) or "the config"
        if available and fixed not in available:
            raise SettingsError(
                f"board {board.board_name or board.what}: bench.provider = {fixed} ({where}) "
                f"is not in its onnxruntime build (available: {', '.join(available)})"
            )
        return ProviderChoice(fixed, f"fixed by the board's config (bench.provider in {where})")
    names = _unique(list(candidates) if candidates is not None else available)
    if not names:
        what = "given" if candidates is not None else "offered by the board's onnxruntime"
        raise SearchError(
            f"no execution provider that runs the model on the board {what} "
            f"({', '.join(candidates if candidates is not None else available) or 'none'}; "
            f"{', '.join(sorted(NOT_COMPUTE))} never count)"
        )
    if len(names) == 1 and available and names[0] not in available:
        raise SettingsError(
            f"board {board.board_name or board.what}: execution provider {names[0]} is not in "
            f"its onnxruntime build (available: {', '.join(available)})"
        )
    if len(names) == 1:
        if candidates is not None:
            reason = f"the only candidate given ({', '.join(candidates)})"
        else:
            skipped = [p for p in available if p in NOT_COMPUTE]
            reason = "the only execution provider this board's onnxruntime offers" + (
                f" ({', '.join(skipped)} runs nothing on the board)" if skipped else ""
            )
        return ProviderChoice(names[0], reason)
    return _measure(board, probe, names, rounds, margin)


def _measure(
    board: Board, probe: bytes, names: list[str], rounds: int, margin: float
) -> ProviderChoice:
    p50s: dict[str, list[float]] = {p: [] for p in names}
    errors: dict[str, str] = {}
    for round_no in range(rounds):
        for provider in names:
            if provider in errors:
                continue  # a provider that failed once is not a candidate
            settings = replace(board.bench, provider=provider)
            (result,) = board.measure_many(
                [probe], names=[f"provider probe {provider} round {round_no + 1}"], bench=settings
            )
            if isinstance(result, BenchFailure):
                errors[provider] = _first_line(result.error)
            elif result.settings.provider != provider:
                # never credit a provider with another's timing
                errors[provider] = f"measured on {result.settings.provider}, not {provider}"
            else:
                p50s[provider].append(float(result.latency.median_ms))
    trials = tuple(
        ProviderTrial(p, None, errors[p])
        if p in errors
        else ProviderTrial(p, float(statistics.median(p50s[p])), None)
        for p in names
    )
    provider, reason = pick(trials, margin)
    return ProviderChoice(provider, reason, trials)


#: the run directory's record of each target's choice, so a resume measures as before
CHOICES_FILE = "providers.json"


def provider_for(
    board: Board,
    space: SearchSpace,
    *,
    kept: ProviderChoice | None = None,
    given: str | None = None,
) -> ProviderChoice:
    """The provider a search measures ``board`` (connected) with, set on the board: ``kept``
    (a resume's), else :func:`choose_provider` (the board's config may fix it; ``given``,
    the provider the caller named, is then the only candidate)."""
    if kept is None:
        kept = choose_provider(
            board, probe_model(space), candidates=[given] if given is not None else None
        )
    board.use_provider(kept.provider)
    return kept


def load_choices(run_dir: Path) -> dict[str, ProviderChoice]:
    """What ``providers.json`` holds (a missing or damaged file: nothing, chosen again)."""
    try:
        data = json.loads((run_dir / CHOICES_FILE).read_text())
        return {str(name): ProviderChoice.from_dict(choice) for name, choice in data.items()}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return {}


def save_choices(run_dir: Path, choices: Mapping[str, ProviderChoice | None]) -> None:
    data = {name: c.to_dict() for name, c in choices.items() if c is not None}
    write_file(run_dir / CHOICES_FILE, json.dumps(data, indent=2) + "\n")  # never via a link
