"""Tools over the trial's draft block: atomic edit lists and the flow validator."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable

from pydantic import BaseModel, Field

from typing import Annotated, Union

from graphs.edits import Edit, EditError, ReplaceBlock, SetCellEdge, apply_edits
from graphs.errors import BlockError, ErrorCode, Issue
from graphs.ir import Block, parse_block
from graphs.validate import validate

from .base import ToolResult, TypedTool

if TYPE_CHECKING:
    from graphs.space import Space

# Describes an earlier candidate of the run that is the same design as a block (e.g. "node 7
# (trial 5, trained)"), or None when the design is new.
SeenFn = Callable[[Block], "str | None"]


@dataclass
class Draft:
    """The block a trial is editing, with everything that happened to it."""

    kind: str
    original: Block
    block: Block
    edits: list[dict] = field(default_factory=list)
    validations: list[list[Issue]] = field(default_factory=list)

    @classmethod
    def start(cls, text: str, kind: str = "base") -> "Draft":
        b = parse_block(text)
        return cls(kind, b, b)

class EditArgs(BaseModel):
    edits: list[Edit] = Field(description="edits applied in order, atomically: all or none")


class CellEditArgs(BaseModel):
    edits: list[Annotated[Union[SetCellEdge, ReplaceBlock], Field(discriminator="kind")]] = Field(
        description="cell edits applied in order, atomically: all or none; replace_block takes an arch string")


class EditResult(ToolResult):
    block: str | None = Field(None, description="the draft after the edits, canonical text")
    failed_edit: int | None = None


class ValidateArgs(BaseModel):
    note: str = Field("", description="optional: what you expect the validator to check")


class ErrorRecord(BaseModel):
    node: int | None
    code: str
    message: str


class ValidateResult(ToolResult):
    valid: bool = False
    errors: list[ErrorRecord] = []
    block: str | None = None


def edit_tool(draft: Draft, cells_only: bool = False) -> TypedTool:
    """`cells_only` (a blind space): only set_cell_edge and replace_block with an arch string, so
    that no edit names a registry op and no draft ever stops being a cell."""

    def run(args: EditArgs | CellEditArgs) -> EditResult:
        if cells_only:
            for i, e in enumerate(args.edits):
                if isinstance(e, ReplaceBlock) and not e.text.strip().startswith("|"):
                    return EditResult(ok=False, failed_edit=i, block=str(draft.block),
                                      error=f"edit {i}: replace_block in this space takes the cell's arch string "
                                            f"(|op~0|+|op~0|op~1|+|op~0|op~1|op~2|)")
        try:
            new = apply_edits(draft.block, args.edits)
        except EditError as exc:
            return EditResult(ok=False, error=str(exc), failed_edit=exc.index, block=str(draft.block))
        except BlockError as exc:
            return EditResult(ok=False, error=str(exc), block=str(draft.block))
        draft.block = new
        draft.edits.append({"edits": [e.model_dump(mode="json") for e in args.edits]})
        return EditResult(block=str(new))

    return TypedTool("edit_block", "Apply a list of typed edits to the draft block atomically; returns the new draft.",
                     CellEditArgs if cells_only else EditArgs, EditResult, run)


def draft_issues(block: Block, kind: str, space: "Space | None" = None, seen: SeenFn | None = None) -> list[Issue]:
    """The validator's issues; when there are none, the space's (out_of_space); when still none,
    `duplicate_candidate` if `seen` knows the design from earlier in the run."""
    issues = validate(block, kind)
    if not issues and space is not None:
        issues = space.issues(block)
    if not issues and seen is not None:
        earlier = seen(block)
        if earlier:
            issues = [Issue(node=None, code=ErrorCode.DUPLICATE_CANDIDATE,
                            message=f"the draft is the same design as {earlier}, already tried in this run: "
                                    f"change it to a design not tried yet")]
    return issues


def validate_tool(draft: Draft, space: "Space | None" = None, seen: SeenFn | None = None,
                  on_valid: Callable[[Block], None] | None = None) -> TypedTool:
    """`space`: the run's search space (None: no space check); `seen`: see `draft_issues`;
    `on_valid`: told of each draft the validator passes (the loop holds it against trials running
    beside this one)."""

    def run(args: ValidateArgs) -> ValidateResult:
        issues = draft_issues(draft.block, draft.kind, space, seen)
        draft.validations.append(issues)
        if not issues and on_valid is not None:
            on_valid(draft.block)
        return ValidateResult(valid=not issues, errors=[ErrorRecord(node=i.node, code=i.code.value, message=i.message)
                                                        for i in issues], block=str(draft.block))

    return TypedTool("validate_block", "Run the flow validator on the current draft block.",
                     ValidateArgs, ValidateResult, run)


MAX_CHECKED_CELLS = 16


class CellsArgs(BaseModel):
    cells: list[str] = Field(min_length=1, max_length=MAX_CHECKED_CELLS,
                             description="NB201 arch strings, e.g. |nor_conv_3x3~0|+|none~0|nor_conv_3x3~1|+|...|")


class CellStatus(BaseModel):
    cell: str
    tried: str | None = Field(None, description="the earlier candidate of the run that is the same design; null: new")
    error: str | None = Field(None, description="why the string is not a cell of the space")


class CellsResult(ToolResult):
    cells: list[CellStatus] = []


def cells_tool(seen: SeenFn) -> TypedTool:
    """check_cells (NB201 space): which of up to 16 candidate cells the run has already tried,
    isomorphic cells included, in one call: a designer rules repeats out before it drafts, instead
    of learning of each from the validator one draft at a time."""
    from graphs.nb201 import Nb201ArchError, arch_to_block

    def run(args: CellsArgs) -> CellsResult:
        out = []
        for arch in args.cells:
            try:
                block = arch_to_block(arch)
            except Nb201ArchError as exc:
                out.append(CellStatus(cell=arch[:200], error=str(exc)[:300]))
                continue
            out.append(CellStatus(cell=arch, tried=seen(block)))
        return CellsResult(cells=out)

    return TypedTool("check_cells", "Which of these NB201 cells this run has already tried (isomorphic cells "
                     "count as the same); a cell with tried=null is new.", CellsArgs, CellsResult, run)
