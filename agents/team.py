"""The design team of one trial: AutoGen AgentChat agents in a SelectorGroupChat whose speaker
order is a fixed state machine (Proposer → Reflector → Modifier ⇄ Reflector), not an LLM's pick."""
from __future__ import annotations

from dataclasses import dataclass
from typing import List, Mapping, Sequence

from autogen_agentchat.agents import AssistantAgent
from autogen_agentchat.base import TerminationCondition
from autogen_agentchat.conditions import FunctionalTermination, MaxMessageTermination
from autogen_agentchat.messages import BaseAgentEvent, BaseChatMessage, TextMessage
from autogen_agentchat.teams import RoundRobinGroupChat, SelectorGroupChat
from autogen_core.model_context import UnboundedChatCompletionContext
from autogen_core.models import ChatCompletionClient, LLMMessage, UserMessage

from .prompts import load_prompt
from .protocol import BLOCK_FENCE, MAX_ROUNDS, SPACE_HEADER, is_final

_NEXT = {"user": "Proposer", "Proposer": "Reflector", "Modifier": "Reflector", "Reflector": "Modifier"}


@dataclass(frozen=True)
class TeamParts:
    """Which parts of the team work (config `designer.*` of designer=team); each off is one of the
    paper's ablations: `knowledge` (no-reader: no inspirations retrieved), `experience` (no-lde: no
    design experience retrieved), `feedback` (no-lif: the Modifier has no validator and the Reflector
    judges the first submission as it stands, one round)."""

    knowledge: bool = True
    experience: bool = True
    feedback: bool = True

    def off(self) -> list[str]:
        """The ablations these parts make, by the paper's names."""
        names = {"knowledge": "no-reader", "experience": "no-lde", "feedback": "no-lif"}
        return [names[k] for k in names if not getattr(self, k)]


@dataclass
class RoleTools:
    proposer: list
    reflector: list
    modifier: list


def next_speaker(messages: Sequence[BaseAgentEvent | BaseChatMessage]) -> str | None:
    """Who speaks next, from who spoke last. Termination conditions end the chat on approval,
    rejection or the round limit."""
    chat = [m for m in messages if isinstance(m, BaseChatMessage)]
    return _NEXT.get(chat[-1].source) if chat else "Proposer"


def reflector_decided(messages: Sequence[BaseAgentEvent | BaseChatMessage]) -> bool:
    """True when a Reflector reply opens with APPROVE or REJECT (agents.protocol). Only its text
    replies count: a marker word inside a tool result or a quoted experience ends nothing."""
    return any(isinstance(m, TextMessage) and m.source == "Reflector" and is_final(m.content) for m in messages)


def termination(max_rounds: int = MAX_ROUNDS) -> TerminationCondition:
    # task + plan + advice + (submission, review) per round
    cap = 3 + 2 * max_rounds
    return FunctionalTermination(reflector_decided) | MaxMessageTermination(cap)


def review_task(task: str) -> str:
    """The design task as the Reflector needs it: the first line (trial, node, figures), the
    design-space line and the block, without the space's description and the children already
    tried (choosing an untried change is the Proposer's part; the validator reports a repeat or a
    step out of the space). Every model call re-sends the task, so this is paid per Reflector call.
    A text not in agents.protocol.design_task's form is returned unchanged."""
    fence = f"```{BLOCK_FENCE}\n"
    start = task.find(fence)
    end = task.find("```", start + len(fence)) if start >= 0 else -1
    if end < 0:
        return task
    head = task[:start].splitlines()
    kept = [head[0], *(line for line in head[1:] if line.startswith(f"{SPACE_HEADER}:"))] if head else []
    return "\n\n".join([*kept, task[start:end + 3]]) + "\n"


class ReviewContext(UnboundedChatCompletionContext):
    """The Reflector's model context: every message, with the trial's task (the first message from
    the loop, source "user") shown as review_task makes it. The stored messages are not changed."""

    async def get_messages(self) -> List[LLMMessage]:
        out: list[LLMMessage] = []
        trimmed = False
        for m in await super().get_messages():
            if not trimmed and isinstance(m, UserMessage) and m.source == "user" and isinstance(m.content, str):
                m = UserMessage(content=review_task(m.content), source=m.source)
                trimmed = True
            out.append(m)
        return out


def space_ops(space) -> list | None:
    """The ops a Modifier's prompt lists in `space` (a graphs.space.Space or None): the whole
    registry in the open space (None), only those the NB201 op forms are built of in nb201 (the
    other ops cannot appear in a cell; listing them cost about 800 tokens per Modifier call)."""
    if space is None or getattr(space, "name", "open") == "open":
        return None
    if getattr(space, "blind", None) is not None:
        return []  # a blind cell is edited by its edges' neutral op names: no registry op is shown
    from graphs.nb201 import NB201_OPS, arch_to_block
    from graphs.registry import op_catalog

    # A cell with one op on all six edges has every edge live and every node an Add of its inputs:
    # the union over the ops ("none" builds nothing) names every registry op a cell is made of.
    names = {n.op for op in NB201_OPS if op != "none"
             for n in arch_to_block(f"|{op}~0|+|{op}~0|{op}~1|+|{op}~0|{op}~1|{op}~2|").nodes} - {"input", "output"}
    return [op for op in op_catalog() if op.name in names]


def design_team(clients: Mapping[str, ChatCompletionClient], tools: RoleTools, max_rounds: int = MAX_ROUNDS,
                ops: Sequence | None = None, space=None) -> SelectorGroupChat:
    """A fresh team for one trial. `clients` maps each role to its model client; the prompts state
    `max_rounds` and list `ops` (default: space_ops(space), the built-in op registry's in the open
    space). The Reflector sees the task through ReviewContext."""
    ops = space_ops(space) if ops is None else ops

    def prompt(role: str) -> str:
        return load_prompt(role, max_rounds=max_rounds, ops=ops)

    agents = [
        AssistantAgent("Proposer", clients["Proposer"], tools=tools.proposer, system_message=prompt("Proposer"),
                       description="Picks an improvement for the block and plans it.",
                       max_tool_iterations=8),  # look-ups, then check_cells a few times in a crowded cell space
        AssistantAgent("Reflector", clients["Reflector"], tools=tools.reflector, system_message=prompt("Reflector"),
                       description="Advises from experience, checks drafts with the validator, approves.",
                       max_tool_iterations=3, model_context=ReviewContext()),
        AssistantAgent("Modifier", clients["Modifier"], tools=tools.modifier, system_message=prompt("Modifier"),
                       description="Edits the block graph with typed edit tools.", max_tool_iterations=5),
    ]
    return SelectorGroupChat(agents, model_client=clients["Proposer"], selector_func=next_speaker,
                             termination_condition=termination(max_rounds), allow_repeated_speaker=True)


def reader_team(client: ChatCompletionClient, tools: list) -> RoundRobinGroupChat:
    reader = AssistantAgent("Reader", client, tools=tools, system_message=load_prompt("Reader"),
                            description="Turns papers into inspirations.", max_tool_iterations=2)
    return RoundRobinGroupChat([reader], termination_condition=MaxMessageTermination(2))
