"""``hwnas targets list|show`` (the hardware database) and ``hwnas farm status``."""

from __future__ import annotations

import argparse
import dataclasses
from typing import Any

from rich.table import Table
from rich.text import Text

import hw_targets
from hw_targets import HardwareProfile

from ..config import load_config
from ..errors import ConfigError
from ..farm import Farm
from ..plugins import plugin_manager
from ..targets import TargetSpec
from .render import bench_summary, console


def _print_board_bench(spec: TargetSpec) -> None:
    if spec.bench:
        where = f" in {spec.source}" if spec.source else ""
        console().print(
            f"bench table of {spec.name}{where}: {bench_summary(spec.bench)} "
            "(these win over a search's settings; a flag of hwnas bench wins over them)"
        )


def run_list(args: argparse.Namespace) -> int:
    plugin_manager()
    config = load_config(args.config)  # a config mistake stops before anything is printed
    profiles = hw_targets.hardware_profiles()
    table = Table(title="hardware profiles", header_style="bold")
    for column in ("name", "board", "CPU, memory, accelerators", "execution providers", "sensors"):
        table.add_column(column)
    table.add_row("local", "this machine (detected at run time)", "-", "-", "-")
    for p in profiles.values():
        table.add_row(
            p.name,
            p.display_name,
            p.summary(),
            ", ".join(p.execution_providers),
            ", ".join(p.power.sensors) or "none",
        )
    console().print(table)
    boards = Table(
        title=Text(f"boards ({config.path or 'no config file: only local'})"),
        header_style="bold",
    )
    any_bench = any(spec.bench for spec in config.boards.values())
    for column in ("board", "transport", "profile", "tags", *(["bench"] if any_bench else [])):
        boards.add_column(column)
    for spec in config.boards.values():  # Text: a board name is shown as typed
        row = [spec.name, spec.transport, spec.profile or "-", ", ".join(spec.tags) or "-"]
        row += [bench_summary(spec.bench) or "-"] if any_bench else []
        boards.add_row(*map(Text, row))
    console().print(boards)
    return 0


def _rows(prefix: str, value: Any) -> list[tuple[str, str]]:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        rows: list[tuple[str, str]] = []
        for f in dataclasses.fields(value):
            rows += _rows(f"{prefix}.{f.name}" if prefix else f.name, getattr(value, f.name))
        return rows
    if isinstance(value, tuple) and value and dataclasses.is_dataclass(value[0]):
        rows = []
        for i, item in enumerate(value):
            rows += _rows(f"{prefix}[{i}]", item)
        return rows
    if value in (None, (), {}):
        return []
    shown = ", ".join(map(str, value)) if isinstance(value, tuple) else str(value)
    return [(prefix, shown)]


def profile_table(profile: HardwareProfile) -> Table:
    table = Table(title=f"{profile.name}: {profile.display_name}", show_header=False)
    table.add_column("field", style="bold")
    table.add_column("value")
    for key, value in _rows("", profile):
        table.add_row(key, value)
    return table


def run_show(args: argparse.Namespace) -> int:
    plugin_manager()
    profiles = hw_targets.hardware_profiles()
    if args.name in profiles:
        console().print(profile_table(profiles[args.name]))
        return 0
    config = load_config(args.config)
    if args.name == "local" or args.name in config.boards:
        spec = config.target(args.name)
        if spec.profile and spec.profile in profiles:
            console().print(profile_table(profiles[spec.profile]))
            _print_board_bench(spec)
            return 0
        with spec.device() as device:
            facts = device.open()
        detected = hw_targets.profile_from_facts(args.name, facts.to_dict())
        match = hw_targets.match_profile(facts.to_dict())  # plugins take a plain mapping
        console().print(profile_table(detected))
        if match:
            console().print(f"closest built-in profile: {match} (hwnas targets show {match})")
        _print_board_bench(spec)
        return 0
    import difflib

    close = difflib.get_close_matches(args.name, [*profiles, *config.boards], n=1)
    hint = f" (did you mean '{close[0]}'?)" if close else ""
    raise ConfigError(f"no profile or board named '{args.name}'{hint}; see hwnas targets list")


def run_farm_status(args: argparse.Namespace) -> int:
    with Farm(load_config(args.config)) as farm:
        statuses = farm.status()  # a lock server that cannot be reached: one line, exit 1
        elsewhere = farm.held_elsewhere()
        where = farm.locks.where
    # every cell is a Text: board names, notes, errors and the lock URL come from config
    # files, other users and the database, and must show as typed ("[/]" is no markup)
    table = Table(title=Text(f"boards (locks in {where})"), header_style="bold")
    any_bench = any(status.spec.bench for status in statuses)
    for column in ("board", "transport", "tags", "held by", "health"):
        table.add_column(column)
    if any_bench:
        table.add_column("bench")
    for status in statuses:
        health = status.health
        state = (
            "ok"
            if not health.consecutive_failures
            else (f"{health.consecutive_failures} failed check(s): {health.last_error}")
        )
        cells = [
            status.spec.name,
            status.spec.transport,
            ", ".join(status.spec.tags) or "-",
            status.holder.describe() if status.holder else "free",
            state,
            *([bench_summary(status.spec.bench) or "-"] if any_bench else []),
        ]
        table.add_row(*map(Text, cells))
    for board, holder in elsewhere.items():  # another host's board, not in this config
        cells = [board, "-", "-", holder.describe(), "not in this configuration"]
        table.add_row(*map(Text, [*cells, *(["-"] if any_bench else [])]))
    console().print(table)
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    targets = sub.add_parser("targets", help="the hardware database and your boards")
    verbs = targets.add_subparsers(dest="targets_verb", required=True, metavar="VERB")
    listing = verbs.add_parser("list", help="hardware profiles and configured boards")
    listing.add_argument("--config", default=None, help="hwnas.toml to read")
    listing.set_defaults(func=run_list)
    show = verbs.add_parser("show", help="one profile; `local` or a board: detected from hello")
    show.add_argument("name")
    show.add_argument("--config", default=None, help="hwnas.toml to read")
    show.set_defaults(func=run_show)
    farm = sub.add_parser("farm", help="who holds which board")
    farm_verbs = farm.add_subparsers(dest="farm_verb", required=True, metavar="VERB")
    status = farm_verbs.add_parser("status", help="boards, their holders and health")
    status.add_argument("--config", default=None, help="hwnas.toml to read")
    status.set_defaults(func=run_farm_status)
