"""The design team of one trial: AutoGen AgentChat agents in a SelectorGroupChat whose speaker
order is a fixed state machine (Proposer → Reflector → Modifier ⇄ Reflector), not an LLM's pick."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

from autogen_agentchat.agents import AssistantAgent
from autogen_agentchat.base import TerminationCondition
from autogen_agentchat.conditions import FunctionalTermination, MaxMessageTermination
from autogen_agentchat.messages import BaseAgentEvent, BaseChatMessage, TextMessage
from autogen_agentchat.teams import RoundRobinGroupChat, SelectorGroupChat
from autogen_core.models import ChatCompletionClient

from .prompts import load_prompt
from .protocol import MAX_ROUNDS, is_final

_NEXT = {"user": "Proposer", "Proposer": "Reflector", "Modifier": "Reflector", "Reflector": "Modifier"}


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


def design_team(clients: Mapping[str, ChatCompletionClient], tools: RoleTools, max_rounds: int = MAX_ROUNDS,
                ops: Sequence | None = None) -> SelectorGroupChat:
    """A fresh team for one trial. `clients` maps each role to its model client; the prompts state
    `max_rounds` and list `ops` (default: the built-in op registry's)."""
    def prompt(role: str) -> str:
        return load_prompt(role, max_rounds=max_rounds, ops=ops)

    agents = [
        AssistantAgent("Proposer", clients["Proposer"], tools=tools.proposer, system_message=prompt("Proposer"),
                       description="Picks an improvement for the block and plans it.", max_tool_iterations=3),
        AssistantAgent("Reflector", clients["Reflector"], tools=tools.reflector, system_message=prompt("Reflector"),
                       description="Advises from experience, checks drafts with the validator, approves.",
                       max_tool_iterations=3),
        AssistantAgent("Modifier", clients["Modifier"], tools=tools.modifier, system_message=prompt("Modifier"),
                       description="Edits the block graph with typed edit tools.", max_tool_iterations=5),
    ]
    return SelectorGroupChat(agents, model_client=clients["Proposer"], selector_func=next_speaker,
                             termination_condition=termination(max_rounds), allow_repeated_speaker=True)


def reader_team(client: ChatCompletionClient, tools: list) -> RoundRobinGroupChat:
    reader = AssistantAgent("Reader", client, tools=tools, system_message=load_prompt("Reader"),
                            description="Turns papers into inspirations.", max_tool_iterations=2)
    return RoundRobinGroupChat([reader], termination_condition=MaxMessageTermination(2))
