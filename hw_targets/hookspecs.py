"""The hooks through which a package adds boards, transports, power readers and search
block kinds.

A plugin is a module (or object) with functions marked ``@hookimpl`` and named like the
specs below, published under the ``hwnas`` entry-point group::

    [project.entry-points.hwnas]
    acme = "hwnas_acme.plugin"

Plugins are loaded automatically unless ``HWNAS_DISABLE_PLUGIN_AUTOLOAD`` is set.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pluggy

from .profile import HardwareProfile

PROJECT = "hwnas"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@dataclass(frozen=True)
class TransportPlugin:
    """A way to reach an agent, selectable as ``transport = "<name>"`` in hwnas.toml.

    ``factory(target_name, options)`` returns an ``hwnas_bench.transports.Transport``;
    ``keys`` are the config keys it accepts with their types, ``required`` those it needs.
    """

    name: str
    factory: Callable[[str, Mapping[str, Any]], Any]
    keys: Mapping[str, type | tuple[type, ...]] = field(default_factory=dict)
    required: tuple[str, ...] = ()
    description: str = ""


@dataclass(frozen=True)
class PowerReaderPlugin:
    """A power-meter reader that runs **on the board**, inside the agent.

    ``module`` is an importable module defining
    ``discover(root: pathlib.Path, run_command) -> (list[PowerMeter], list[str])`` with
    ``PowerMeter`` from ``device_agent.power``. It may import only the standard library
    and ``device_agent``: it is copied into the agent's zipapp and runs on the board.
    """

    name: str
    module: str
    description: str = ""


@hookspec
def hwnas_hardware_profiles() -> Sequence[HardwareProfile]:  # type: ignore[empty-body]
    """Hardware profiles this plugin adds to the database.

    :return: profiles (build them with :func:`hw_targets.load_profile` from a TOML file
        shipped in the package, or :func:`hw_targets.profile_from_dict`). A name that is
        already taken is an error naming both sources.
    """


@hookspec
def hwnas_transports() -> Sequence[TransportPlugin]:  # type: ignore[empty-body]
    """Transports this plugin adds (``local``, ``ssh`` and ``serial`` are built in)."""


@hookspec
def hwnas_power_readers() -> Sequence[PowerReaderPlugin]:  # type: ignore[empty-body]
    """Power-meter readers this plugin adds to every agent the host starts or deploys."""


@hookspec
def hwnas_add_commands(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add verbs to the ``hwnas`` command line.

    :param subparsers: the ``hwnas`` subcommand registry; call ``add_parser`` and set a
        ``func(args) -> int`` default, as the built-in verbs do.
    """


@hookspec
def hwnas_search_blocks() -> Sequence[Any]:  # type: ignore[empty-body]
    """Block kinds this plugin adds to the search space (``search.blocks``).

    :return: instances of subclasses of ``search.blocks.BlockKind`` (typed loosely here
        because hw_targets never imports search; ``search.blocks`` checks each one). A kind
        whose name or token prefix is taken is an error naming the plugin. See
        docs/blocks.md for what a kind defines.
    """


@hookspec(firstresult=True)
def hwnas_match_profile(facts: Mapping[str, Any]) -> str | None:
    """Name the profile that a board's ``hello`` facts describe, if this plugin knows it.

    :param facts: what the agent reported (``device_model``, ``cpu_model``, ``arch``...).
    :return: a profile name, or None to let other plugins answer.
    """
