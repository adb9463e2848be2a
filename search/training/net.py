"""What every candidate trains as: the base of the flat space's net (``search.build``) and
of a block candidate's (``search.blocks.candidate_net``). It sits here, below both, so that
``search.build`` can build either kind without the block nets importing it back."""

from __future__ import annotations

from typing import TYPE_CHECKING

from torch import nn

if TYPE_CHECKING:
    from ..candidate import Candidate


class CandidateNet(nn.Module):
    """A candidate's torch module: ``forward`` takes N x C x H x W (or N x C x L) float32
    and returns logits; ``candidate`` is the architecture it was built from."""

    candidate: Candidate
