"""The block kinds of the search space, one module each, and their registry.

A kind (``conv``, ``dwconv``, ``mbconv``, ``res``, ``pool``, ``gap``, ``fc``, ``skip``) defines
its genes and canonical token, shape inference, analytic cost, torch module and ONNX emission
(BatchNorm folded), the ops the latency table measures for it (``table_ops``) and how it is
pruned (``prune_groups``, ``pruned``). ``KINDS``, :func:`register`, :func:`decode` and
:func:`kind_of` are the registry (it lives in ``registry.py`` so the chain and net modules
can use it without an import circle); plugins add kinds through the ``hwnas_search_blocks``
hook. ``BlockNet`` and ``to_onnx`` import torch and onnx on first use.

``StageSpace`` (stages.py) is the stage (macro) space over the kinds; ``chain_ops`` and
``op_model`` (table.py) the latency table's view of a net; ``net_groups``,
``frozen_modules`` and ``pruned_blocks`` (pruning.py) its structured pruning.
``SearchSpace(stages=...)`` searches the stage space: its genes are ``stage_genes``
(stage_genes.py), its candidates ``BlockCandidate`` (candidate.py), built and exported as
``BlockCandidateNet`` (candidate_net.py). See docs/blocks.md.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .base import (
    ACTIVATIONS,
    Block,
    BlockCost,
    BlockKind,
    FlagGene,
    Gene,
    IntGene,
    PruneGroup,
    Shape,
    TableOp,
    Trace,
    WordGene,
    make_divisible,
)
from .candidate import BlockCandidate
from .chain import chain_cost, decode_blocks, encode_blocks, infer_shapes
from .pruning import NetGroup, frozen_modules, net_groups, pruned_blocks
from .registry import KINDS, decode, encode, kind_of, register, unregister
from .spaces import edge_space
from .stage_genes import GeneSuggest, space_mapping, stage_genes
from .stages import RandomSuggest, StageCandidate, StageSpace, StageSpec, StemSpec, Suggest
from .table import chain_ops, op_model

if TYPE_CHECKING:
    from .candidate_net import BlockCandidateNet, OnnxBlockNet
    from .graph import GraphBuilder
    from .net import BlockNet, to_onnx

_LAZY = {
    "BlockNet": "net",
    "to_onnx": "net",
    "GraphBuilder": "graph",
    "BlockCandidateNet": "candidate_net",
    "OnnxBlockNet": "candidate_net",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "ACTIVATIONS",
    "KINDS",
    "Block",
    "BlockCandidate",
    "BlockCandidateNet",
    "BlockCost",
    "BlockKind",
    "BlockNet",
    "FlagGene",
    "Gene",
    "GeneSuggest",
    "GraphBuilder",
    "IntGene",
    "NetGroup",
    "OnnxBlockNet",
    "PruneGroup",
    "RandomSuggest",
    "Shape",
    "StageCandidate",
    "StageSpace",
    "StageSpec",
    "StemSpec",
    "Suggest",
    "TableOp",
    "Trace",
    "WordGene",
    "chain_cost",
    "chain_ops",
    "decode",
    "decode_blocks",
    "edge_space",
    "encode",
    "encode_blocks",
    "frozen_modules",
    "infer_shapes",
    "kind_of",
    "make_divisible",
    "net_groups",
    "op_model",
    "pruned_blocks",
    "register",
    "space_mapping",
    "stage_genes",
    "to_onnx",
    "unregister",
]
