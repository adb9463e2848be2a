"""The block kinds by name: the built-in ones, those registered in this process, and those
plugins add through the ``hwnas_search_blocks`` hook (asked on each use of the registry, so
a plugin registered or unregistered later is seen; nothing is loaded before first use)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping

from hw_targets.plugins import search_blocks
from hw_targets.profile import PluginError

from ..errors import SpaceError
from . import conv, dwconv, fc, gap, mbconv, pool, res, skip
from .base import Block, BlockKind, check_kind

BUILTIN: dict[str, BlockKind] = {
    module.KIND.name: module.KIND for module in (conv, dwconv, mbconv, res, pool, gap, fc, skip)
}
_added: dict[str, BlockKind] = {}


def _taken(kind: BlockKind, found: Mapping[str, BlockKind]) -> str | None:
    """Why ``kind`` cannot join ``found``, or None."""
    if kind.name in found:
        return f"the block kind name '{kind.name}' is taken"
    for other in found.values():
        if other.prefix == kind.prefix:
            return f"the block prefix '{kind.prefix}' is taken by '{other.name}'"
    return None


def _all() -> dict[str, BlockKind]:
    found = {**BUILTIN, **_added}
    for plugin, kind in search_blocks():
        if not isinstance(kind, BlockKind):
            raise PluginError(
                f"plugin '{plugin}' returned {type(kind).__name__} from hwnas_search_blocks, "
                "not a search.blocks.BlockKind"
            )
        try:
            check_kind(kind)
        except SpaceError as exc:
            raise PluginError(f"plugin '{plugin}': {exc}") from exc
        clash = _taken(kind, found)
        if clash:
            raise PluginError(f"plugin '{plugin}': {clash}")
        found[kind.name] = kind
    return found


class _Kinds(Mapping[str, BlockKind]):
    """A live view: every lookup sees the plugins registered at that moment."""

    def __getitem__(self, name: str) -> BlockKind:
        return _all()[name]

    def __iter__(self) -> Iterator[str]:
        return iter(_all())

    def __len__(self) -> int:
        return len(_all())

    def __repr__(self) -> str:
        return f"KINDS({', '.join(_all())})"


#: name -> kind, built-in first, then registered ones, then plugins'.
KINDS: Mapping[str, BlockKind] = _Kinds()


def register(kind: BlockKind) -> BlockKind:
    """Add a kind for this process; SpaceError when its name or prefix is taken (plugins'
    included) or its genes could not round-trip. Plugins use the hook instead."""
    if not isinstance(kind, BlockKind):
        raise SpaceError(f"{kind!r} is not a search.blocks.BlockKind")
    check_kind(kind)
    clash = _taken(kind, _all())
    if clash:
        raise SpaceError(clash)
    _added[kind.name] = kind
    return kind


def unregister(name: str) -> None:
    """Remove a kind :func:`register` added (built-in and plugin kinds stay)."""
    if name not in _added:
        raise SpaceError(f"'{name}' is not a block kind added with register()")
    del _added[name]


def kind_of(block: Block) -> BlockKind:
    kinds = _all()
    if block.kind not in kinds:
        raise SpaceError(f"unknown block kind '{block.kind}' (known: {', '.join(kinds)})")
    return kinds[block.kind]


def decode(token: str) -> Block:
    """The block a token names (``mb_e6_k5_s2_c24_se_hswish``); SpaceError naming the
    token for an unknown prefix or a token its kind does not write that way."""
    if not isinstance(token, str):
        raise SpaceError(f"a block token must be text, not {token!r}")
    prefix = token.split("_", 1)[0]
    kinds = _all()
    for kind in kinds.values():
        if kind.prefix == prefix:
            return kind.decode(token)
    known = ", ".join(kind.prefix for kind in kinds.values())
    raise SpaceError(f"unknown block '{token}' (known prefixes: {known})")


def encode(block: Block) -> str:
    return kind_of(block).encode(block)
