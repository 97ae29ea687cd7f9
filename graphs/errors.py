"""Typed problems found in a block: one record shape for parser, validator and edits."""
from __future__ import annotations

from enum import Enum

from pydantic import BaseModel


class ErrorCode(str, Enum):
    """Stable codes: tools, tests and the experience base key on these strings."""

    SYNTAX = "syntax_error"
    DUPLICATE_NODE = "duplicate_node"
    BAD_NODE_ID = "bad_node_id"
    UNDEFINED_NODE = "undefined_node"
    UNUSED_NODE = "unused_node"
    CYCLE = "cycle"
    MISSING_INPUT_NODE = "missing_input_node"
    EXTRA_INPUT_NODE = "extra_input_node"
    MISSING_OUTPUT_NODE = "missing_output_node"
    EXTRA_OUTPUT_NODE = "extra_output_node"
    UNKNOWN_OP = "unknown_op"
    UNKNOWN_PARAM = "unknown_param"
    MISSING_PARAM = "missing_param"
    BAD_PARAM = "bad_param"
    GROUPS = "groups_not_divisible"
    ARITY = "arity"
    SHAPE_MISMATCH = "shape_mismatch"
    CHANNEL_AXIS = "channel_axis"
    RANK = "rank"
    RESHAPE = "reshape_mismatch"
    SAME_PADDING = "same_padding"
    EMPTY_DIM = "empty_dim"
    OUTPUT_CONTRACT = "output_contract"
    SECTIONS = "sections"
    OUT_OF_SPACE = "out_of_space"  # valid, but outside the run's search space (graphs.space)
    DUPLICATE_CANDIDATE = "duplicate_candidate"  # the same design as an earlier candidate of the run


class Issue(BaseModel, frozen=True):
    """One problem: which node (None when it concerns the whole text), a code, a readable message."""

    node: int | None
    code: ErrorCode
    message: str

    def __str__(self) -> str:
        return f"[{self.code.value}] {self.message}"


def issue(node: int | None, code: ErrorCode, message: str) -> Issue:
    """An issue whose message starts with the node it concerns, as people read them."""
    return Issue(node=node, code=code, message=f"node {node}: {message}" if node is not None else message)


class BlockError(ValueError):
    """Raised where a caller needs a valid block and did not get one; carries every issue found."""

    def __init__(self, issues: list[Issue]):
        self.issues = list(issues)
        super().__init__("; ".join(str(i) for i in self.issues) or "invalid block")
