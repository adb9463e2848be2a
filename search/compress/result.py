"""Settings of a compression run and its result (table, ``compression.json``, files)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from hwnas_bench import BenchSettings

from ..errors import SettingsError
from ..settings import STATS
from ..training.train import MAX_EPOCHS, check_int, check_number
from .choose import OBJECTIVES, Variant, kept_fp32_because
from .errors import CompressionError
from .prune import IMPORTANCES
from .quantize import METHODS
from .report import SCHEMA, render_table, variant_dict
from .sensitivity import Precision

DYNAMIC = ("auto", "on", "off")
#: the most interleaved measuring rounds a compression may ask for
MAX_ROUNDS = 100
#: the share of multiply-accumulates in fully-connected layers from which ``dynamic="auto"``
#: adds a dynamic-int8 variant (it quantizes only those layers)
FC_HEAVY = 0.5


@dataclass(frozen=True)
class CompressSettings:
    """How to compress; every field has a default that suits a search's small CNNs."""

    tolerance: float = 1.0  #: accuracy drop allowed, in percentage points
    objective: str = "latency"  #: "latency" (on ``latency_stat``) or "energy"
    #: the latency statistic the choice is made on: p50, p95, p99 or mean (a search's
    #: compress step sets its own ``latency_stat``)
    latency_stat: str = "p50"
    per_channel: bool = True  #: per-channel int8 weights (per-tensor if False)
    methods: tuple[str, ...] = ("minmax", "entropy", "percentile")  #: tried; best accuracy wins
    dynamic: str = "auto"  #: dynamic-int8 variant: "auto" (fc-heavy models), "on", "off"
    prune_ratios: tuple[float, ...] = (0.25, 0.5)  #: fraction of each layer's channels removed
    importance: str = "l1"  #: "l1" (weight magnitude) or "taylor" (|w * grad|)
    fine_tune_epochs: int = 2
    fine_tune_lr: float = 1e-3
    calibration_samples: int = 256  #: drawn (seeded) from the calibration data
    rounds: int = 3  #: interleaved measurement rounds on the board (>= 2 to choose a variant)
    #: the least gain counted, on top of the rounds' spread: ratio to fp32 <= 1 - margin
    margin: float = 0.03
    bench: BenchSettings | None = None  #: None: the board's settings (SEARCH_BENCH)
    seed: int = 0

    def validate(self) -> None:
        if self.objective not in OBJECTIVES:
            raise SettingsError(f"unknown objective '{self.objective}' (known: latency, energy)")
        if self.latency_stat not in STATS:
            raise SettingsError(
                f"unknown latency_stat '{self.latency_stat}' (known: {', '.join(STATS)})"
            )
        check_number("tolerance", self.tolerance, 0.0, 100.0)  # accuracy points
        unknown = [m for m in self.methods if m not in METHODS]
        if unknown or not self.methods:
            raise SettingsError(
                f"calibration methods must be some of {', '.join(METHODS)}, "
                f"got {list(self.methods)}"
            )
        if self.dynamic not in DYNAMIC:
            raise SettingsError(
                f"dynamic must be one of {', '.join(DYNAMIC)}, got {self.dynamic!r}"
            )
        if self.importance not in IMPORTANCES:
            raise SettingsError(
                f"unknown pruning importance '{self.importance}' (known: {', '.join(IMPORTANCES)})"
            )
        bad = [r for r in self.prune_ratios if not 0.0 < r < 1.0]
        if bad:
            raise SettingsError(f"pruning ratios must be in (0, 1), got {bad}")
        # bounded, so a mistyped 2**70 is refused rather than run without end
        for name, high in (
            ("fine_tune_epochs", MAX_EPOCHS),
            ("calibration_samples", 10**6),
            ("rounds", MAX_ROUNDS),
        ):
            check_int(name, getattr(self, name), 1, high)
        if not (isinstance(self.margin, (int, float)) and 0.0 <= self.margin < 1.0):
            raise SettingsError(f"margin must be in [0, 1), got {self.margin}")
        check_number("fine_tune_lr", self.fine_tune_lr, 0.0, 10.0, low_open=True)
        if self.bench is not None:
            try:
                self.bench.validate()
            except ValueError as exc:
                raise SettingsError(f"bad measurement setting: {exc}") from exc

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["bench"] = None if self.bench is None else self.bench.to_wire()
        return out


@dataclass
class CompressionResult:
    """Every variant with its figures, the chosen one, and what they were measured against."""

    model_name: str
    variants: list[Variant]
    chosen: Variant
    settings: CompressSettings
    board: str  #: the board the variants were measured on
    target: str  #: what was asked for (a name, tag:X, local)
    calibration: dict[str, Any]  #: source, samples, method chosen
    evaluation: dict[str, Any]  #: source, samples
    precision: Precision | None = None  #: how the int8 variant was reached
    notes: list[str] = field(default_factory=list)
    out: Path | None = None

    @property
    def fp32(self) -> Variant:
        return self.variants[0]

    def variant(self, name: str) -> Variant:
        for v in self.variants:
            if v.name == name:
                return v
        raise KeyError(f"no variant '{name}' (have {', '.join(v.name for v in self.variants)})")

    def table(self) -> str:
        """The header lines, then one line per variant."""
        s = self.settings
        head = [
            f"Compression of {self.model_name}, measured on {self.board} "
            f"({s.rounds} interleaved rounds), objective {s.objective} on {s.latency_stat}, "
            f"tolerance {s.tolerance:g} accuracy points",
            f"Accuracy on {self.evaluation['source']} ({self.evaluation['samples']} samples); "
            f"calibration on {self.calibration['source']} ({self.calibration['samples']} "
            f"samples), method {self.calibration.get('method')}",
        ]
        if self.precision is not None and self.precision.excluded:
            head.append(f"int8 keeps in float: {', '.join(self.precision.excluded)}")
        head += [f"note: {n}" for n in self.notes]
        chosen = self.chosen
        tail = f"Chosen: {chosen.name}"
        stat = chosen.timing.stat
        if chosen is not self.fp32 and chosen.timing.ratio is not None:
            drop = chosen.drop_points(self.fp32)
            tail += (
                f" (x{chosen.timing.ratio:.2f} of fp32 {stat}, faster in every round, accuracy "
                f"drop {drop:+.1f} points)"
            )
        elif chosen is self.fp32:
            tail += f" (kept: {kept_fp32_because(self.variants)})"
        return "\n".join([*head, "", render_table(self.variants), "", tail])

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA,
            "model": self.model_name,
            "target": self.target,
            "board": self.board,
            "objective": self.settings.objective,
            "latency_stat": self.settings.latency_stat,
            "kept_fp32_because": (
                kept_fp32_because(self.variants) if self.chosen is self.fp32 else None
            ),
            "tolerance_points": self.settings.tolerance,
            "chosen": self.chosen.name,
            "calibration": self.calibration,
            "evaluation": self.evaluation,
            "precision": None if self.precision is None else self.precision.to_dict(),
            "notes": self.notes,
            "settings": self.settings.to_dict(),
            "variants": [variant_dict(v, self.fp32, self.board) for v in self.variants],
        }

    def write(self, out: str | Path) -> Path:
        """``<name>.onnx`` for every variant and ``compression.json`` into ``out``."""
        directory = Path(out)
        try:
            directory.mkdir(parents=True, exist_ok=True)
            for v in self.variants:
                path = directory / f"{v.name}.onnx"
                path.write_bytes(v.model)
                v.file = path.name
            path = directory / "compression.json"
            path.write_text(json.dumps(self.to_dict(), indent=2) + "\n")
        except OSError as exc:
            raise CompressionError(f"cannot write the variants into {directory}: {exc}") from exc
        self.out = directory
        return path
