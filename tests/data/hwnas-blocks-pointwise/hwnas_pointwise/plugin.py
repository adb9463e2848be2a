"""The plugin module the ``hwnas`` entry point names."""

from __future__ import annotations

from hw_targets import hookimpl
from search.blocks import BlockKind

from .kind import PointwiseKind


@hookimpl
def hwnas_search_blocks() -> list[BlockKind]:
    return [PointwiseKind()]
