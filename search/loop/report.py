"""What a finished search writes: pareto.json, pareto.csv, pareto.png, summary.md,
best.onnx, predictor.png, and the one-line summary. Every latency and energy figure here is
a measured one, except those labelled predicted (the predictor's, made before the
measurement). Each file goes through :func:`files.write_file`: never through a planted
link, and left as it is (with its date) when its content is unchanged."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hwnas_bench import BoardFacts

from .. import records
from ..files import MAX_MODEL_BYTES, read_file, write_file
from ..predict.predictor import Prediction
from ..records import TrialRecord
from ..settings import SearchSettings
from .result import SearchResult

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

#: the columns of pareto.csv, one row per member of the front (a several-target search's
#: run directory adds ``target`` in front)
CSV_COLUMNS = (
    "trial",
    "hash",
    "accuracy",
    "latency_ms",
    "latency_stat",
    "energy_mj",
    "predicted_latency_ms",
    "params",
    "flops",
    "peak_activation_bytes",
    "memory_mb",
    "board",
    "candidate",
)
#: a budget further right than this many times the slowest point is marked at the edge,
#: not drawn (the axis stays on the data)
BUDGET_ZOOM = 2.0


def plural(n: int, word: str, words: str | None = None) -> str:
    """``1 trial``, ``2 trials`` (``words``: an irregular plural)."""
    return f"{n} {word if n == 1 else words or word + 's'}"


def _energy(rec: TrialRecord | None) -> str:
    if rec is None or rec.measurement is None:
        return "n/a"
    if rec.energy_mj is not None:
        return f"{rec.energy_mj:.3f} mJ"
    reason = rec.measurement.power.reason or ""
    if not reason or reason.startswith(("no power", "no meter")):
        return "n/a (no power meter)"
    return f"n/a ({reason[:60]})"


def final_line(result: SearchResult) -> str:
    """``Search finished after 40 trials (34 measured on local (3 over budget), 6 pruned).
    Best: validation accuracy 97.1%, p50 latency 0.21 ms, energy n/a (no power meter)``"""
    c = result.counts
    stat = result.settings.latency_stat
    boards = sorted({r.measurement.target for r in result.trials if r.measurement})
    where = ", ".join(boards) if len(boards) > 1 else result.board or "the board"
    measured = f"{c['measured']} measured on {where}"  # a shared study: every worker's board
    if c["infeasible"]:
        measured += f" ({c['infeasible']} over budget)"
    pruned = f"{c['pruned']} pruned"
    if c["predicted_over_budget"]:
        pruned += f" ({c['predicted_over_budget']} predicted over budget)"
    parts = [measured, pruned]
    if c["failed"]:
        parts.append(f"{c['failed']} failed")
    repeats = f"; {plural(c['duplicates'], 'repeat')} not measured again" if c["duplicates"] else ""
    head = f"Search finished after {plural(c['generated'], 'trial')} ({', '.join(parts)}{repeats})."
    best = result.best
    if best is None:
        smallest = result.smallest_latency()
        latency_budget_ms = result.settings.budgets.latency_ms
        if smallest is None:
            return f"{head} No candidate was measured."
        return (
            f"{head} No candidate met the budget: the smallest {stat} latency measured was "
            f"{smallest:.3f} ms"
            + (
                f", over the budget of {latency_budget_ms:g} ms."
                if latency_budget_ms is not None
                else "."
            )
        )
    return (
        f"{head} Best: validation accuracy {100 * (best.accuracy or 0):.1f}%, {stat} latency "
        f"{best.latency_ms:.3f} ms, energy {_energy(best)}"
    )


def resumed_line(result: SearchResult, to_go: int) -> str:
    """``resumed runs/x: kept 12 measured trials, 3 pruned; 25 to go``: what a resumed run
    kept of the study (``to_go``: the trials it still runs)."""
    c = result.counts
    kept = [plural(c["measured"], "measured trial")]
    kept += [f"{c[k]} {k}" for k in ("pruned", "failed") if c[k]]
    if c["duplicates"]:
        kept.append(plural(c["duplicates"], "repeat"))
    if c["interrupted"]:
        kept.append(f"{c['interrupted']} interrupted (redone first)")
    tail = f"{to_go} to go" if to_go > 0 else "none to go (the run is finished)"
    return f"resumed {result.out}: kept {', '.join(kept)}; {tail}"


def trial_line(rec: TrialRecord, stat: str) -> str:
    """One line per trial, for logs (the CLI prints these when stderr is not a terminal)."""
    head = f"trial {rec.number}: {rec.outcome}"
    measured = {n: f for n, f in rec.boards.items() if f.latency_ms is not None}
    if measured:  # several targets: each one's figure
        each = ", ".join(
            f"{n} {f.latency_ms:.3f} ms"
            + ("" if f.feasible is not False else f" ({f.reason})" if f.reason else " over budget")
            + _predicted_note(f.predicted)
            for n, f in measured.items()
        )
        head += f", accuracy {100 * (rec.accuracy or 0):.1f}%, {stat} measured on {each}"
        if rec.reason:
            head += f" ({rec.reason})"
    elif rec.latency_ms is not None:
        # an infeasible one says why (over a budget, or a figure a budget needs not measured)
        feasible = "" if rec.feasible is not False else f", {rec.reason or 'over budget'}"
        energy = f", energy {rec.energy_mj:.3f} mJ" if rec.energy_mj is not None else ""
        head += (
            f", accuracy {100 * (rec.accuracy or 0):.1f}%, {stat} {rec.latency_ms:.3f} ms"
            f"{energy} (measured{feasible})"
        )
    elif rec.reason:
        head += f" ({rec.reason})"
    predicted = rec.predicted_latency_ms
    if predicted is not None and rec.outcome != records.PREDICTED_OVER and not measured:
        head += f" [predicted {predicted:.3f} ms]"
    return f"{head}: {rec.candidate}"


def _predicted_note(predicted: Prediction | None) -> str:
    return f" [predicted {predicted.latency_ms:.3f}]" if predicted is not None else ""


def front_rows(result: SearchResult) -> list[dict[str, Any]]:
    return [
        {
            "trial": r.number,
            "candidate": r.candidate,
            "hash": r.hash,
            "accuracy": r.accuracy,
            "latency_ms": r.latency_ms,
            "latency_stat": result.settings.latency_stat,
            "energy_mj": r.energy_mj,
            # the predictor's figures before it was measured
            "predicted": r.predicted.to_dict() if r.predicted is not None else None,
            "params": r.cost_figures.get("params"),
            "flops": r.cost_figures.get("flops"),
            "peak_activation_bytes": r.cost_figures.get("peak_activation_bytes"),
            "memory_mb": r.cost_figures.get("memory_mb"),
            "measurement": r.measurement.to_dict() if r.measurement else None,
        }
        for r in result.pareto
    ]


def front_csv(rows: list[dict[str, Any]], targets: list[str] | None = None) -> str:
    """pareto.csv: a header row, then one row per front member (:data:`CSV_COLUMNS`; with
    ``targets``, each row's target first: ``rows`` then hold a ``target`` key)."""
    columns = (["target"] if targets else []) + list(CSV_COLUMNS)
    text = io.StringIO()
    writer = csv.DictWriter(text, columns, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        predicted = row.get("predicted") or {}
        writer.writerow({**row, "predicted_latency_ms": predicted.get("latency_ms")})
    return text.getvalue()


def write_reports(result: SearchResult, folder: Path | None = None) -> None:
    """The reports of a one-target result in ``folder`` (default: the run directory, with
    best.onnx; a several-target search gives each target's view its ``targets/<name>/``).
    A finished run that was resumed keeps the reports it has (nothing in them is new)."""
    out = folder or result.out
    if result.finished_before and (out / "summary.md").exists():
        return
    best = result.best
    rows = front_rows(result)
    write_file(
        out / "pareto.json",
        json.dumps(
            {
                "latency_stat": result.settings.latency_stat,
                "objectives": list(result.settings.objectives),
                "constraints": result.settings.budgets.to_mapping(),
                "board": result.board,
                "best": best.hash if best else None,
                "front": rows,
            },
            indent=2,
        ),
    )
    write_file(out / "pareto.csv", front_csv([{**r, "board": result.board} for r in rows]))
    model = result.out / "models" / f"{best.hash}.onnx" if best is not None else None
    if folder is None and model is not None and model.exists():  # a shared study's report
        write_file(out / "best.onnx", read_file(model, MAX_MODEL_BYTES))  # has no models
    write_file(out / "pareto.png", png(pareto_figure(result)))
    if result.forecast is not None:
        from ..predict.plot import plot_predictions

        plot_predictions(
            result.forecast.predictor,
            out / "predictor.png",
            stat=result.settings.latency_stat,
            board=result.board,
        )
    write_file(out / "summary.md", summary(result))


def _xy(recs: list[TrialRecord]) -> tuple[list[float], list[float]]:
    return [r.latency_ms or 0.0 for r in recs], [r.accuracy or 0.0 for r in recs]


def png(fig: Figure) -> bytes:
    """The figure as PNG bytes (closed after), for :func:`files.write_file`."""
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    try:
        fig.savefig(buf, format="png")
    finally:
        plt.close(fig)
    return buf.getvalue()


def mark_budget(ax: Axes, latencies: list[float], latency_budget_ms: float | None) -> None:
    """The budget as a dashed line when it is near the points; far right of them (every
    point far left of it), an arrow at the right edge instead, so the axis stays on the
    data."""
    if latency_budget_ms is None:
        return
    label = f"budget {latency_budget_ms:g} ms"
    if not latencies or latency_budget_ms <= BUDGET_ZOOM * max(latencies):
        ax.axvline(latency_budget_ms, ls="--", c="gray", label=label)
        return
    ax.annotate(
        f"{label} \u2192",
        xy=(1.0, 0.5),
        xycoords="axes fraction",
        xytext=(-4, 0),
        textcoords="offset points",
        ha="right",
        va="center",
        fontsize=8,
        color="gray",
    )


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")  # files only; no display on a board host or CI runner
    import matplotlib.pyplot as plt

    return plt


def pareto_figure(result: SearchResult) -> Figure:
    """pareto.png: the measured candidates (feasible, over budget), the front, the budget;
    the x-axis on the points (see :func:`mark_budget`). With energy as an objective a
    second panel puts accuracy against measured energy, and the front (over all three) is
    marked in both rather than drawn as a staircase (it is not one in either plane)."""
    plt = _pyplot()
    measured = [
        r for r in result.trials if r.outcome == records.MEASURED and r.latency_ms is not None
    ]
    feasible = [r for r in measured if r.feasible is not False]
    infeasible = [r for r in measured if r.feasible is False]
    front = result.pareto
    s = result.settings
    fig: Figure
    panels = 2 if s.energy_objective else 1
    fig, axes = plt.subplots(
        1, panels, figsize=(6.4 * panels, 4.4), dpi=100, sharey=True, squeeze=False
    )
    ax = axes[0][0]
    ax.scatter(*_xy(feasible), c="tab:blue", label="feasible", s=22)
    if infeasible:
        ax.scatter(*_xy(infeasible), c="tab:red", marker="x", label="infeasible", s=22)
    if front and s.energy_objective:
        ax.scatter(
            *_xy(front),
            facecolors="none",
            edgecolors="tab:green",
            s=80,
            label="Pareto front (accuracy, latency, energy)",
        )
    elif front:
        ax.step(*_xy(front), where="post", c="tab:green", label="Pareto front")
    mark_budget(ax, _xy(measured)[0], s.budgets.latency_ms)
    ax.set_xlabel(f"measured {s.latency_stat} latency on {result.board} (ms)")
    ax.set_ylabel("validation accuracy")
    ax.set_title(f"{plural(len(measured), 'candidate')} measured")
    if s.energy_objective:
        _energy_panel(axes[0][1], feasible, infeasible, front, result)
    for a in axes[0]:
        a.grid(alpha=0.3)
        a.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    return fig


def _energy_panel(
    ax: Axes,
    feasible: list[TrialRecord],
    infeasible: list[TrialRecord],
    front: list[TrialRecord],
    result: SearchResult,
) -> None:
    """Accuracy against measured energy: only candidates with an energy figure are drawn
    (how many had none is in the title)."""

    def xy(recs: list[TrialRecord]) -> tuple[list[float], list[float]]:
        with_energy = [r for r in recs if r.energy_mj is not None]
        return [r.energy_mj or 0.0 for r in with_energy], [r.accuracy or 0.0 for r in with_energy]

    ax.scatter(*xy(feasible), c="tab:blue", label="feasible", s=22)
    if infeasible:
        ax.scatter(*xy(infeasible), c="tab:red", marker="x", label="infeasible", s=22)
    if front:
        ax.scatter(
            *xy(front), facecolors="none", edgecolors="tab:green", s=80, label="Pareto front"
        )
    budget = result.settings.budgets.energy_mj
    if budget is not None:
        ax.axvline(budget, ls="--", c="gray", label=f"budget {budget:g} mJ")
    missing = sum(1 for r in feasible + infeasible if r.energy_mj is None)
    ax.set_xlabel(f"measured energy per inference on {result.board} (mJ)")
    ax.set_title(
        "energy" + (f" ({plural(missing, 'candidate')} without a figure)" if missing else "")
    )


def plot(result: SearchResult, path: Path) -> None:
    write_file(path, png(pareto_figure(result)))


def objectives_text(settings: SearchSettings) -> str:
    """``validation accuracy (max), measured p50 latency (min)[, measured energy ...]``."""
    text = f"validation accuracy (max), measured {settings.latency_stat} latency (min)"
    if settings.energy_objective:
        text += ", measured energy per inference (min)"
    return text


def summary(result: SearchResult) -> str:
    s = result.settings
    budgets = s.budgets.to_mapping()
    c = result.counts
    facts = result.facts
    board = ", ".join(
        f"{k}: {facts[k]}"
        for k in ("hostname", "device_model", "cpu_model", "arch", "cores_logical", "memory_mb")
        if facts.get(k)
    )
    lines = [
        "# Search summary",
        "",
        final_line(result),
        "",
        "## Settings",
        "",
        f"- strategy: {s.strategy}"
        + (f" {json.dumps(s.strategy_options)}" if s.strategy_options else "")
        + f", trials: {s.trials}, seed: {s.seed}, predictor: {'on' if s.predictor else 'off'}",
        f"- training: {s.train.optimizer} lr {s.train.learning_rate:g}, {s.train.epochs} epochs, "
        f"batch {s.train.batch_size}, validation split {s.validation_split:g}",
        f"- objectives: {objectives_text(s)}",
        f"- constraints: {json.dumps(budgets) if budgets else 'none'}",
        "",
        "## Board",
        "",
        f"- target: {result.board}" + (f" ({board})" if board else ""),
        f"- onnxruntime {facts.get('onnxruntime', '?')}, power meters: "
        f"{', '.join(facts.power_meter_sources) or 'none'}",
        *_provider_lines(result),
        "",
        "## Counts",
        "",
        "| " + " | ".join(c) + " |",
        "|" + "---|" * len(c),
        "| " + " | ".join(str(v) for v in c.values()) + " |",
        "",
        "## Pareto front (feasible, measured"
        + (": accuracy, latency and energy)" if s.energy_objective else ")"),
        "",
        f"| trial | accuracy | {s.latency_stat} ms | energy mJ | params | FLOPs | "
        "peak act. KB | candidate |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in result.pareto:
        cost = r.cost_figures
        act = (records.finite(cost.get("peak_activation_bytes")) or 0) / 1024
        lines.append(
            f"| {r.number} | {100 * (r.accuracy or 0):.1f}% | {r.latency_ms:.3f} | "
            f"{_energy(r).split(' (')[0]} | {cost.get('params')} | {cost.get('flops')} | "
            f"{act:.1f} | "
            f"`{r.candidate}` |"
        )
    if not result.pareto:
        lines.append("| - | no feasible candidate | | | | | | |")
    lines += ["", "Every latency and energy figure above was measured on the board.", ""]
    lines += predictor_section(result)
    return "\n".join(lines)


def write_overview(result: SearchResult) -> None:
    """A several-target search's run directory: summary.md (each target's outcome and
    best, with its execution provider), pareto.json (each target's front) and pareto.png
    (the fronts side by side). Each target's own reports are in ``targets/<name>/``."""
    from ..model_card import TARGETS, safe_name

    out, s = result.out, result.settings
    if result.finished_before and (out / "summary.md").exists():
        return  # a finished run, resumed: its reports are kept
    views = {name: result.for_target(name) for name in result.targets}
    fronts = {
        name: {
            "board": view.board,
            "provider": _provider(view, name),
            "best": view.best.hash if view.best else None,
            "front": front_rows(view),
        }
        for name, view in views.items()
    }
    write_file(
        out / "pareto.json",
        json.dumps(
            {
                "latency_stat": s.latency_stat,
                "objectives": list(s.objectives),
                "constraints": s.budgets.to_mapping(),
                "targets": fronts,
            },
            indent=2,
        ),
    )
    rows = [
        {**row, "target": name, "board": view.board}
        for name, view in views.items()
        for row in front_rows(view)
    ]
    write_file(out / "pareto.csv", front_csv(rows, list(views)))
    plot_fronts(views, out / "pareto.png", s.latency_stat, s.budgets.latency_ms)
    lines = [
        "# Search summary",
        "",
        f"{plural(len(views), 'target')}; each candidate trained once and measured on every one.",
        *(["", f"Objectives: {objectives_text(s)}, on each target."] if s.energy_objective else []),
        "",
        "| target | board | provider | best accuracy | "
        f"{s.latency_stat} ms | candidate | front | folder |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, view in views.items():
        best = view.best
        folder = f"{TARGETS}/{safe_name(name)}/"
        lines.append(
            f"| {name} | {view.board} | {_provider(view, name) or '?'} | "
            + (
                f"{100 * (best.accuracy or 0):.1f}% | {best.latency_ms:.3f} | `{best.candidate}` | "
                if best is not None
                else "none within budget | | | "
            )
            + f"{len(view.pareto)} | [{folder}]({folder}summary.md) |"
        )
    lines += ["", "## Each target", ""]
    lines += [f"- {name}: {final_line(view)}" for name, view in views.items()]
    lines += [
        "",
        "Every latency and energy figure above was measured on that target's board. "
        "A candidate counts as feasible for the study when it is within budget on at "
        "least one target; each target's front and best use only its own measurements.",
        "",
    ]
    write_file(out / "summary.md", "\n".join(lines))


def _provider(view: SearchResult, name: str) -> str | None:
    state = view.targets.get(name)
    return state.provider.provider if state is not None and state.provider else None


def plot_fronts(
    views: dict[str, SearchResult], path: Path, stat: str, latency_budget_ms: float | None
) -> None:
    """One panel per target: its measured candidates and its front."""
    write_file(path, png(fronts_figure(views, stat, latency_budget_ms)))


def fronts_figure(
    views: dict[str, SearchResult], stat: str, latency_budget_ms: float | None
) -> Figure:
    plt = _pyplot()
    fig: Figure
    fig, axes = plt.subplots(
        1, len(views), figsize=(4.2 * len(views), 4.0), dpi=100, sharey=True, squeeze=False
    )
    for ax, (name, view) in zip(axes[0], views.items(), strict=True):
        measured = [
            r for r in view.trials if r.outcome == records.MEASURED and r.latency_ms is not None
        ]
        ax.scatter(*_xy(measured), c="tab:blue", s=18, label="measured")
        if view.pareto:
            ax.step(*_xy(view.pareto), where="post", c="tab:green", label="Pareto front")
        mark_budget(ax, _xy(measured)[0], latency_budget_ms)
        ax.set_title(f"{name} ({view.board})", fontsize=9)
        ax.set_xlabel(f"measured {stat} latency (ms)")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("validation accuracy")
    axes[0][0].legend(loc="lower right", fontsize=7)
    fig.tight_layout()
    return fig


def _provider_lines(result: SearchResult) -> list[str]:
    states = [s for s in result.targets.values() if s.provider is not None]
    if len(states) != 1 or states[0].provider is None:
        return []
    choice = states[0].provider
    tried = "; ".join(
        f"{t.provider} {t.latency_ms:.3f} ms"
        if t.latency_ms is not None
        else f"{t.provider}: {t.error}"
        for t in choice.tried
    )
    return [
        f"- execution provider: {choice.provider} ({choice.reason})"
        + (f"; tried {tried}" if tried else "")
    ]


def predictor_section(result: SearchResult) -> list[str]:
    """The table and the predictor's error against the measurements, for summary.md."""
    forecast = result.forecast
    if forecast is None:
        return []
    table, predictor = forecast.table, forecast.predictor
    error = predictor.error()
    energy = predictor.energy_error()
    skipped = result.counts["predicted_over_budget"]
    return [
        "## Latency predictor (predicted, not measured)",
        "",
        f"- lookup table: {plural(len(table.entries), 'one-layer entry', 'one-layer entries')} "
        f"measured on {result.board} "
        f"({table.measured} in this run, the rest from the cache; fingerprint "
        f"{table.fingerprint[:12]})",
        "- error of the prediction made before each measurement, against that measurement: "
        + (error.describe() if error is not None else "no candidate measured yet"),
        "- energy: "
        + (
            energy.describe()
            if energy is not None
            else "no energy prediction (no power meter)"
            if not table.has_energy
            else "no candidate measured yet"
        ),
        f"- candidates not trained because predicted over budget: {skipped}"
        + ("" if result.settings.predictor else " (the predictor's skipping is off)"),
        "- plot: predictor.png (predicted vs measured)",
        "",
    ]


def study_result(storage: str, study_name: str, out: Path) -> SearchResult:
    """A shared study's result from its trials alone (each measured trial holds its
    Measurement, its board's name and facts), as any host sees it. A study whose records are
    not a search's (written by hand, by another version, nested past the parser's limit) is
    a SettingsError naming it."""
    import optuna

    from ..errors import SearchError, SettingsError
    from ..settings import SearchSettings
    from .shared import RECORD_KEY, open_storage, study_records

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        study = optuna.load_study(study_name=study_name, storage=open_storage(storage))
    except KeyError:
        raise SettingsError(f"no study {study_name} in that storage") from None
    try:
        record = study.user_attrs.get(RECORD_KEY)
        if not isinstance(record, dict):
            raise SearchError(f"study {study_name} holds no {RECORD_KEY} record: not a search's")
        json.dumps(record)  # the summary shows its settings: nested past the limit fails
        key = dict(record["settings"])
        trials = study_records(study.get_trials(deepcopy=False), None)
        settings = SearchSettings.from_dict(key, trials=max(1, len(trials)))
        settings.validate()
    except (KeyError, TypeError, ValueError, AttributeError, RecursionError) as exc:
        what = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        raise SettingsError(
            f"study {study_name}'s {RECORD_KEY} record or trial attributes are not a "
            f"search's ({what[:200]})"
        ) from None
    result = SearchResult(out, settings)
    result.trials = trials
    boards = sorted({r.measurement.target for r in result.trials if r.measurement})
    result.board = ", ".join(boards)
    first = next((r.measurement for r in result.trials if r.measurement), None)
    result.facts = BoardFacts.from_mapping(first.board) if first is not None else BoardFacts()
    return result


def report_study(storage: str, study_name: str, out: Path) -> SearchResult:
    """``hwnas report``: pareto.json, pareto.csv, pareto.png and summary.md of a shared
    study in ``out`` (a directory of this user, with no planted link: see run_dir.py)."""
    from ..files import owned_dir, scan

    scan(owned_dir(out))
    result = study_result(storage, study_name, out)
    write_reports(result)
    return result
