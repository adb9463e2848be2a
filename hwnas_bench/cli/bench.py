"""``hwnas bench MODEL`` and ``hwnas profile MODEL``."""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from device_agent.protocol import BenchSettings, GraphOptimization

from ..config import parse_cpu_list
from ..errors import HwnasError, InputFileError, UsageError
from ..targets import BOARD_BENCH_KEYS, BenchRule, TargetSpec, table_entries
from .common import add_target_options, open_device, resolve_target
from .render import bench_summary, console, measurement_notes, measurement_table, profile_table, say

_DEFAULTS = BenchSettings()

#: BenchSettings field -> the flag that sets it, so a validation error names what the user typed
FLAGS = {
    "threads": "--threads",
    "provider": "--provider",
    "graph_optimization": "--graph-optimization",
    "warmup_runs": "--warmup-runs",
    "warmup_min_s": "--warmup-time",
    "min_iterations": "--min-iterations",
    "min_time_s": "--min-time",
    "max_time_s": "--max-time",
    "dims": "--dim",
    "seed": "--seed",
    "power_meter": "--power-meter",
    "power_interval_s": "--power-interval",
    "cpus": "--cpus",
    "governor": "--governor",
}
_FIELD = re.compile(r"\b(" + "|".join(FLAGS) + r")\b")


def _dims(values: list[str]) -> dict[str, int]:
    dims: dict[str, int] = {}
    for item in values:
        name, sep, value = item.partition("=")
        if not sep or not name or not value.isdigit():
            raise UsageError(f"--dim expects NAME=INT, e.g. --dim batch=8, got '{item}'")
        dims[name] = int(value)
    return dims


def cpus_option(text: str) -> list[int]:
    """argparse type of ``--cpus``: ``3``, ``4-7``, ``0,2-3``."""
    try:
        return parse_cpu_list(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def flag_names(message: str) -> str:
    """``min_time_s must not exceed max_time_s`` -> ``--min-time must not exceed --max-time``."""
    return _FIELD.sub(lambda m: FLAGS[m.group(1)], message)


def add_settings_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("measurement")
    # provider, threads, graph optimization, power meter, cpus and governor default to None:
    # what the flags leave unset comes from the board's [bench] table, then BenchSettings
    group.add_argument(
        "--threads",
        type=int,
        default=None,
        help=f"intra-op threads (0 = auto; default: the board's bench table, else "
        f"{_DEFAULTS.threads})",
    )
    group.add_argument(
        "--provider",
        default=None,
        help=f"onnxruntime execution provider (default: the board's, else {_DEFAULTS.provider})",
    )
    group.add_argument(
        "--graph-optimization",
        default=None,
        choices=[g.value for g in GraphOptimization],
        help=f"default: the board's, else {_DEFAULTS.graph_optimization}",
    )
    group.add_argument(
        "--warmup-runs",
        type=int,
        default=_DEFAULTS.warmup_runs,
        help=f"untimed runs before timing (default {_DEFAULTS.warmup_runs})",
    )
    group.add_argument(
        "--warmup-time",
        type=float,
        default=_DEFAULTS.warmup_min_s,
        metavar="S",
        help=f"warm up for at least this long (default {_DEFAULTS.warmup_min_s:g} s)",
    )
    group.add_argument(
        "--min-iterations",
        type=int,
        default=_DEFAULTS.min_iterations,
        help=f"time at least this many runs (default {_DEFAULTS.min_iterations})",
    )
    group.add_argument(
        "--min-time",
        type=float,
        default=_DEFAULTS.min_time_s,
        metavar="S",
        help=f"and for at least this long (default {_DEFAULTS.min_time_s:g} s)",
    )
    group.add_argument(
        "--max-time",
        type=float,
        default=None,
        metavar="S",
        help=f"cap on the timed loop (default {_DEFAULTS.max_time_s:g} s, or twice --min-time)",
    )
    group.add_argument(
        "--dim",
        action="append",
        default=[],
        metavar="NAME=INT",
        help="value of a dynamic input dimension, e.g. --dim batch=8 (repeatable)",
    )
    group.add_argument("--seed", type=int, default=_DEFAULTS.seed, help="seed of synthetic inputs")
    group.add_argument(
        "--power-meter", default=None, help="power meter source to use (default: the board's)"
    )
    group.add_argument(
        "--power-interval",
        type=float,
        default=_DEFAULTS.power_interval_s,
        metavar="S",
        help=f"power sampling period (default {_DEFAULTS.power_interval_s:g} s)",
    )
    group.add_argument(
        "--cpus",
        type=cpus_option,
        default=None,
        metavar="LIST",
        help="pin the agent to these CPUs, e.g. 4-7 or 0,2-3 (default: all it may use)",
    )
    group.add_argument(
        "--governor",
        default=None,
        metavar="NAME",
        help="cpufreq governor for the timed run, e.g. performance (restored after; needs "
        "permission on the board)",
    )


def settings_from(args: argparse.Namespace, spec: TargetSpec | None = None) -> BenchSettings:
    """The flags as BenchSettings. The target's ``[bench]`` table (``spec``) fills the board
    settings the flags leave unset (a flag typed for this run is the more specific)."""
    settings = BenchSettings(
        provider=args.provider or _DEFAULTS.provider,
        threads=args.threads if args.threads is not None else _DEFAULTS.threads,
        graph_optimization=args.graph_optimization or _DEFAULTS.graph_optimization,
        warmup_runs=args.warmup_runs,
        warmup_min_s=args.warmup_time,
        min_iterations=args.min_iterations,
        min_time_s=args.min_time,
        max_time_s=args.max_time
        if args.max_time is not None
        else max(_DEFAULTS.max_time_s, 2 * args.min_time),
        dims=_dims(args.dim) or None,
        seed=args.seed,
        power_meter=args.power_meter,
        power_interval_s=args.power_interval,
        cpus=args.cpus,
        governor=args.governor,
    )
    settings = replace(settings, **board_fill(args, spec))
    try:
        settings.validate()
    except ValueError as exc:
        raise UsageError(f"bad option: {flag_names(str(exc))}") from exc
    return settings


def board_fill(args: argparse.Namespace, spec: TargetSpec | None) -> dict[str, Any]:
    """The entries of the board's ``[bench]`` table that no flag of this run set."""
    given = [key for key in BOARD_BENCH_KEYS if getattr(args, key, None) is not None]
    return table_entries(spec, BenchRule.FLAG_WINS, given)


def say_board_fill(args: argparse.Namespace, spec: TargetSpec) -> None:
    """One line naming the settings that came from the board's table, so none is a surprise."""
    used = board_fill(args, spec)
    if used and not getattr(args, "quiet", False):
        say(f"from the bench table of {spec.name}: {bench_summary(used)} (a flag given here wins)")


def _load_inputs(path: Path | None) -> Mapping[str, Any] | None:
    """The arrays of an ``.npz``; anything else is one line naming the file and the fix."""
    if path is None:
        return None
    import zipfile

    import numpy as np

    how = "write one with numpy.savez(FILE, name=array, ...), one array per model input"
    try:
        loaded = np.load(path, allow_pickle=False)
    except OSError as exc:
        raise InputFileError(f"--inputs {path}: {exc.strerror or exc}", str(path)) from exc
    except (ValueError, EOFError, zipfile.BadZipFile) as exc:  # numpy: "pickled data ..."
        raise UsageError(
            f"--inputs {path}: not a NumPy .npz archive of arrays (pickled objects are "
            f"refused); {how}"
        ) from exc
    if not isinstance(loaded, np.lib.npyio.NpzFile):
        raise UsageError(
            f"--inputs {path}: a single array (.npy), not an .npz archive of named arrays; "
            f"save it with np.savez(FILE, INPUT_NAME=array)"
        )
    try:
        with loaded as npz:
            return {name: npz[name] for name in npz.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise UsageError(
            f"--inputs {path}: not a NumPy .npz archive of arrays (pickled objects are "
            f"refused); {how}"
        ) from exc


def run_bench(args: argparse.Namespace) -> int:
    spec = resolve_target(args)
    settings = settings_from(args, spec)
    say_board_fill(args, spec)
    inputs = _load_inputs(args.inputs)
    out = console()
    with open_device(args, spec) as device:
        if sys.stderr.isatty() and not args.quiet:
            with console(stderr=True).status(f"measuring on {device.name}…") as status:

                def show(progress: Mapping[str, Any]) -> None:
                    stage, runs = progress.get("stage", ""), progress.get("iterations", 0)
                    elapsed = progress.get("elapsed_s", 0)
                    status.update(f"{device.name}: {stage} {runs} runs, {elapsed:.0f} s")

                m = device.bench(args.model, settings, inputs=inputs, on_progress=show)
        else:
            m = device.bench(args.model, settings, inputs=inputs)
    if not args.quiet:  # shown first: a file that cannot be written must not lose the result
        out.print(measurement_table(m))
        for note in measurement_notes(m, verbose=args.verbose):
            say(note)
    if args.json:
        write_output(args.json, m.to_json() + "\n", "the measurement")
        if not args.quiet:
            say(f"measurement written to {args.json}")
    return 0


def write_output(path: Path, text: str | bytes, what: str) -> None:
    """Write a result file; a failure is one clear line, and says where the result went."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(text, bytes):
            path.write_bytes(text)
        else:
            path.write_text(text)
    except OSError as exc:
        import tempfile

        fd, fallback = tempfile.mkstemp(prefix="hwnas-", suffix=path.suffix or ".out")
        with open(fd, "wb") as fh:
            fh.write(text if isinstance(text, bytes) else text.encode())
        raise HwnasError(
            f"cannot write {what} to {path}: {exc.strerror or exc}; saved to {fallback} instead"
        ) from exc


def run_profile(args: argparse.Namespace) -> int:
    spec = resolve_target(args)
    settings = settings_from(args, spec)
    say_board_fill(args, spec)
    with open_device(args, spec) as device:
        profile = device.profile(
            args.model, settings, iterations=args.iterations, trace=args.trace is not None
        )
    console().print(profile_table(profile, args.top))
    if args.trace is not None and profile.trace is not None:
        write_output(args.trace, profile.trace, "the trace")
        console().print(
            f"Chrome trace written to {args.trace} (open in Perfetto or chrome://tracing)"
        )
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    bench = sub.add_parser("bench", help="measure an ONNX model on a board")
    bench.add_argument("model", type=Path, help="the .onnx file")
    add_target_options(bench)
    add_settings_options(bench)
    bench.add_argument("--inputs", type=Path, default=None, help=".npz of input arrays to use")
    bench.add_argument(
        "--json", type=Path, default=None, metavar="OUT", help="write the Measurement JSON"
    )
    bench.add_argument("--quiet", "-q", action="store_true", help="print nothing but errors")
    bench.set_defaults(func=run_bench)

    prof = sub.add_parser("profile", help="per-node times from onnxruntime's profiler")
    prof.add_argument("model", type=Path)
    add_target_options(prof)
    add_settings_options(prof)
    prof.add_argument("--iterations", type=int, default=20)
    prof.add_argument("--top", type=int, default=15, help="rows to show")
    prof.add_argument("--trace", type=Path, default=None, metavar="OUT", help="write the raw trace")
    prof.set_defaults(func=run_profile)
