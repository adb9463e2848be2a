"""Deploy, the last step of the loop: ship a run's model to its board and prove it there.

:func:`deploy_model` leases the target's board from the farm, copies ``model.onnx`` and its
model card to it, re-measures the model there with the card's own bench settings (the same
rounds-and-median procedure the search used, with more rounds while they straddle the
latency budget: search/measure/confidence.py), and compares the fresh latency statistic with the
card's:

* over the card's latency budget at 95% confidence, or still undecided after the most
  rounds (the search's rule, so a model the search proved within is not failed by one slow
  loop), over its energy budget, or without the figure one of them needs (an
  energy budget the board's meter gave no figure for is ``not measured``): fail, unless
  ``allow_unmeasured_energy`` lets a missing energy figure through (a note says so);
* further from the card's figure than the measurement's own spread: fail. The spread of a
  measurement is its ``p95 - p50`` (how far its slow tail reaches above the median); the
  allowed difference is the larger of the card's spread, the fresh spread and 10 % of the
  card's figure (a floor: tiny models measured in a short loop can show almost no spread),
  but never more than half the card's figure (a ceiling: on a busy board a tiny model's tail
  can reach twice its median, while the median of hundreds of runs moves far less; a model
  twice as slow as its card, or half as slow, is never "the same").

Nothing on the card is trusted: :func:`search.model_card.load_target_folder` checks every
field (a NaN or negative figure, a ``candidate_hash`` that is not 12 hex digits, bench
settings the agent would refuse, a card nested too deep) and the model file's type and size
against the card's ``model_bytes`` before it reads it; what it refuses is a ModelCardError
(``hwnas deploy``: one line, exit 2). The bytes it read are the ones shipped. A comparison
that cannot be made (a NaN fresh figure) fails.

Over SSH the files go by SFTP into ``path`` (default ``~/hwnas-models/<candidate hash>/``),
each written as ``.part`` then renamed, and the board hashes the model it now holds. Over
serial (and ``local``) there is no file system access but the agent's: the model lands in
the agent's model cache (``<cache dir>/<sha256>.onnx``, where the result says); the agent
protocol has no operation to store an arbitrary file, so the model card stays in the run
directory and the result says so.
"""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from hwnas_bench import Config, Measurement, load_config
from hwnas_bench.errors import DeployError
from hwnas_bench.farm import Farm, Lease
from hwnas_bench.transports.ssh import SSHTransport

from .measure import ROUNDS, latency_of
from .measure.confidence import Decided, Verdict, measure_decided
from .model_card import (
    CARD_FILE,
    DEPLOY_FILE,
    MODEL_FILE,
    ModelCard,
    ModelCardError,
    load_target_folder,
)
from .settings import MeasuredFigures, Violation

#: how a card's energy budget without a fresh energy figure is deployed all the same
UNMEASURED_ENERGY_HINT = (
    "the card's energy budget cannot be checked here (--allow-unmeasured-energy deploys "
    "without the check)"
)
#: the smallest difference ever called a change: 10 % of the card's figure
MIN_TOLERANCE = 0.10
#: the largest difference ever called "the same": half the card's figure
MAX_TOLERANCE = 0.50

#: hash a file on the board with its python; prints "-" if it cannot be read
_SHA256_ON_BOARD = (
    "import hashlib, sys\n"
    "try:\n    print(hashlib.sha256(open(sys.argv[1], 'rb').read()).hexdigest())\n"
    "except (OSError, IOError):\n    print('-')\n"
)


def spread_ms(m: Measurement) -> float:
    """A measurement's own spread: how far its p95 lies above its median (ms)."""
    return max(0.0, float(m.latency.p95_ms - m.latency.median_ms))


def tolerance_ms(card: Measurement, fresh: Measurement, card_ms: float) -> float:
    """The difference between two measurements that is still "the same": see the module."""
    spread = max(spread_ms(card), spread_ms(fresh), MIN_TOLERANCE * card_ms)
    return min(spread, MAX_TOLERANCE * card_ms)


@dataclass
class DeployResult:
    """Where the files landed on the board, and the fresh measurement against the card's."""

    target: str
    board: str  #: the board leased
    transport: str  #: ssh, serial, local, tcp
    model_path: str  #: on the board
    card_path: str | None  #: on the board; None where the transport cannot put a file
    stat: str  #: the latency statistic compared (the card's)
    card_ms: float
    fresh_ms: float
    tolerance_ms: float
    latency_budget_ms: float | None
    fresh: Measurement
    #: the side of the latency budget the fresh rounds are on, every round kept
    latency_verdict: Verdict | None
    ok: bool
    reason: str  #: why it failed; "" when ok
    notes: list[str] = field(default_factory=list)
    record: Path | None = None  #: RUN_DIR/targets/<name>/deploy.json

    def figures(self) -> str:
        """``p50 fresh 1.234 ms vs card 1.200 ms (allowed +-0.120 ms, budget 5 ms)``."""
        latency_budget_ms = self.latency_budget_ms
        budget = f", budget {latency_budget_ms:g} ms" if latency_budget_ms is not None else ""
        return (
            f"{self.stat} fresh {self.fresh_ms:.4g} ms vs card {self.card_ms:.4g} ms "
            f"(allowed +-{self.tolerance_ms:.3g} ms{budget})"
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": "hwnas.deploy/1",
            "target": self.target,
            "board": self.board,
            "transport": self.transport,
            "model_path": self.model_path,
            "card_path": self.card_path,
            "latency_stat": self.stat,
            "card_ms": self.card_ms,
            "fresh_ms": self.fresh_ms,
            "tolerance_ms": self.tolerance_ms,
            "latency_budget_ms": self.latency_budget_ms,
            "ok": self.ok,
            "reason": self.reason,
            "notes": self.notes,
            "latency_verdict": (
                self.latency_verdict.to_dict() if self.latency_verdict is not None else None
            ),
            "measurement": self.fresh.to_dict(),
        }


def verdict(
    card: ModelCard,
    fresh: Measurement,
    *,
    allow_unmeasured_energy: bool = False,
    latency_verdict: Verdict | None = None,
) -> tuple[float, float, str]:
    """(fresh figure, allowed difference, why it fails or ""). A budget the fresh figures
    are over, or lack the figure for (``not measured``), fails; ``allow_unmeasured_energy``
    passes an energy budget that has no fresh energy figure. ``latency_verdict``: the
    side of the latency budget the fresh rounds are on (the search's rule: over, or
    undecided after the most rounds, fails)."""
    card_ms = card.latency_ms
    fresh_ms = latency_of(fresh, card.latency_stat)
    allowed = tolerance_ms(card.measured(), fresh, card_ms)
    stat = card.latency_stat
    figures = MeasuredFigures.of(fresh, stat, latency_verdict)
    for v in card.budget_limits.violations(figures):
        if not _unmeasured_energy(v):
            return fresh_ms, allowed, v.reason
        if not allow_unmeasured_energy:
            return fresh_ms, allowed, f"{v.reason}; {UNMEASURED_ENERGY_HINT}"
    # "not within", so a NaN on either side fails rather than passes
    if not abs(fresh_ms - card_ms) <= allowed:
        return (
            fresh_ms,
            allowed,
            (
                f"differs from the card: {stat} {fresh_ms:.4g} ms vs {card_ms:.4g} ms, more than "
                f"the measurements' spread ({allowed:.3g} ms)"
            ),
        )
    return fresh_ms, allowed, ""


def _unmeasured_energy(v: Violation) -> bool:
    return v.budget == "energy_mj" and not v.measured


def _remote_dir(path: str | None, card: ModelCard) -> str:
    """The SFTP directory: relative paths are in the login's home (as ``~/`` means)."""
    if path is None:
        return f"hwnas-models/{card.candidate_hash}"
    if path == "~":
        return "."
    return path[2:] if path.startswith("~/") else path


def _shown(remote: str) -> str:
    return remote if remote.startswith("/") else f"~/{remote}"


def _put_over_ssh(
    transport: SSHTransport, directory: str, model: bytes, card: bytes, sha256: str
) -> tuple[str, str]:
    """Upload both files (``.part`` then rename) and check the board's hash of the model."""
    model_remote = f"{directory.rstrip('/')}/{MODEL_FILE}"
    card_remote = f"{directory.rstrip('/')}/{CARD_FILE}"
    transport.upload(model_remote, model)  # as the agent goes: mkdir -p, .part, rename
    transport.upload(card_remote, card)
    command = (
        f"{shlex.quote(transport.python)} -c {shlex.quote(_SHA256_ON_BOARD)} "
        f"{shlex.quote(model_remote)}"
    )
    code, out, err = transport.run(command)
    digest = out.strip()
    if code != 0 or digest != sha256:
        why = err.strip().splitlines()[-1] if err.strip() else f"board's sha256 {digest!r}"
        raise DeployError(
            transport.target,
            f"the model on the board at {_shown(model_remote)} is not the one sent ({why})",
        )
    return _shown(model_remote), _shown(card_remote)


def _put_through_agent(lease: Lease, model: bytes, notes: list[str]) -> str:
    info = lease.device.put_model(model)
    cache = (lease.device.facts or lease.facts).cache or {}
    notes.append(
        "the agent protocol cannot store an arbitrary file on the board: the model card "
        "stays in the run directory"
    )
    where = cache.get("dir")
    return f"{where}/{info.sha256}.onnx" if where else f"the agent's model cache ({info.sha256})"


def remeasure(lease: Lease, model: bytes, card: ModelCard, rounds: int = ROUNDS) -> Decided:
    """The search's procedure with the card's settings: ``rounds`` loops, the median one;
    with a latency budget, more rounds while they straddle it (search/measure/confidence.py)."""
    settings = replace(card.measured().settings.bench_settings(), inputs=None)
    settings.validate()
    stat = card.latency_stat
    return measure_decided(
        lambda: [lease.device.bench(model, settings) for _ in range(rounds)],
        card.budget_limits.latency_ms,
        stat,
        lambda m: latency_of(m, stat),
    )


def deploy_model(
    run_dir: Path,
    target: str,
    *,
    path: str | None = None,
    config: Config | None = None,
    lease_timeout: float = 600.0,
    allow_unmeasured_energy: bool = False,
) -> DeployResult:
    """Ship the target's model and card to its board, re-measure it there, compare.

    A card with an energy budget fails when the re-measure has no energy figure (the
    board's meter gave none: ``not measured``), unless ``allow_unmeasured_energy``: then it
    is not checked, and a note says so.

    Raises ModelCardError for a run, target or card that cannot be used, and the board's
    own errors (``hwnas_bench`` errors) when it cannot be reached. A fresh measurement that
    does not match is not raised: the result has ``ok`` False and says why; deploy.json is
    written either way.
    """
    folder = load_target_folder(run_dir, target)  # read once: these bytes ship
    model_path, card, model, card_bytes = (
        folder.model_path,
        folder.card,
        folder.model,
        folder.card_bytes,
    )
    farm = Farm(config or load_config(), purpose="deploy")
    notes: list[str] = []
    try:
        with farm.lease(
            target, timeout=lease_timeout, purpose=f"deploy {card.candidate_hash}"
        ) as lease:
            transport = lease.device.transport
            if isinstance(transport, SSHTransport):
                remote = _remote_dir(path, card)
                where, card_where = _put_over_ssh(
                    transport, remote, model, card_bytes, card.model_sha256
                )
                card_at: str | None = card_where
            else:
                if path is not None:
                    raise ModelCardError(
                        f"--path is for SSH boards; {lease.name} is reached over "
                        f"{lease.spec.transport}, where the model goes into the agent's cache"
                    )
                where, card_at = _put_through_agent(lease, model, notes), None
            decided = remeasure(lease, model, card)
            board, kind = lease.name, lease.spec.transport
    finally:
        farm.close()
    fresh = decided.measurement
    fresh_ms, allowed, reason = verdict(
        card,
        fresh,
        allow_unmeasured_energy=allow_unmeasured_energy,
        latency_verdict=decided.verdict,
    )
    broken = card.budget_limits.violations(MeasuredFigures.of(fresh, card.latency_stat))
    unmeasured = [v for v in broken if _unmeasured_energy(v)]
    if unmeasured and allow_unmeasured_energy:
        notes.append(f"energy budget not checked (allowed): {unmeasured[0].reason}")
    if board != card.board:
        notes.append(f"measured on {board}; the card's measurement is from {card.board}")
    result = DeployResult(
        target=target,
        board=board,
        transport=kind,
        model_path=where,
        card_path=card_at,
        stat=card.latency_stat,
        card_ms=card.latency_ms,
        fresh_ms=fresh_ms,
        tolerance_ms=allowed,
        latency_budget_ms=card.latency_budget_ms,
        fresh=fresh,
        latency_verdict=decided.verdict,
        ok=not reason,
        reason=reason,
        notes=notes,
    )
    record = model_path.parent / DEPLOY_FILE
    try:
        record.write_text(json.dumps(result.to_dict(), indent=2) + "\n")
    except OSError as exc:
        raise ModelCardError(f"cannot write {record}: {exc.strerror or exc}") from exc
    result.record = record
    return result
