"""The genes a block kind is made of: integers, words and flags, and how each is written.

An integer gene is written ``<tag><value>`` (``k3``, no sign, no leading zero), a word gene
as the word itself (``relu6``), a flag as its word when set and not at all when not
(``se``). No torch here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from ..errors import SpaceError

ACTIVATIONS = ("relu", "relu6", "hswish")
#: the most channels or units a block may have: a bound so every gene's values are a finite,
#: stated set (the space's memory cap refuses what would not fit long before this).
MAX_WIDTH = 65536
STRIDES = (1, 2, 3, 4)
NUMBER = re.compile(r"0|[1-9][0-9]*")
NAME = re.compile(r"[a-z][a-z0-9]*")


def _allowed_text(allowed: tuple[Any, ...] | range) -> str:
    if isinstance(allowed, range):
        return f"{allowed.start}..{allowed.stop - 1}"
    return "|".join(str(v) for v in allowed)


@dataclass(frozen=True)
class IntGene:
    """An integer gene, written ``<tag><value>`` (``k3``)."""

    name: str
    tag: str
    allowed: tuple[int, ...] | range

    def pattern(self) -> str:
        return f"{self.tag}<{_allowed_text(self.allowed)}>"

    def check(self, value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or value not in self.allowed:
            raise SpaceError(
                f"{self.name} must be one of {_allowed_text(self.allowed)}, not {value!r}"
            )
        return value

    def parts(self, value: Any) -> list[str]:
        return [f"{self.tag}{value}"]

    def read(self, part: str | None) -> tuple[int, int] | None:
        """(value, parts used), or None when ``part`` is not this gene."""
        if part is None or not part.startswith(self.tag):
            return None
        digits = part[len(self.tag) :]
        return (int(digits), 1) if NUMBER.fullmatch(digits) else None


@dataclass(frozen=True)
class WordGene:
    """A choice among words, written as the word (``relu6``)."""

    name: str
    words: tuple[str, ...]

    def pattern(self) -> str:
        return f"<{'|'.join(self.words)}>"

    def check(self, value: Any) -> str:
        if not isinstance(value, str) or value not in self.words:
            raise SpaceError(f"{self.name} must be one of {'|'.join(self.words)}, not {value!r}")
        return value

    def parts(self, value: Any) -> list[str]:
        return [str(value)]

    def read(self, part: str | None) -> tuple[str, int] | None:
        return (part, 1) if part in self.words else None


@dataclass(frozen=True)
class FlagGene:
    """On or off, written as its word when on (``se``) and not at all when off."""

    name: str
    word: str

    def pattern(self) -> str:
        return f"[_{self.word}]"

    def check(self, value: Any) -> bool:
        if not isinstance(value, bool):
            raise SpaceError(f"{self.name} must be true or false, not {value!r}")
        return value

    def parts(self, value: Any) -> list[str]:
        return [self.word] if value else []

    def read(self, part: str | None) -> tuple[bool, int]:
        return (True, 1) if part == self.word else (False, 0)


Gene = IntGene | WordGene | FlagGene
ACT = WordGene("act", ACTIVATIONS)
WIDTH = IntGene("width", "c", range(1, MAX_WIDTH + 1))
STRIDE = IntGene("stride", "s", STRIDES)
