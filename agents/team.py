"""The design team of one trial: AutoGen AgentChat agents in a SelectorGroupChat whose speaker
order is a fixed state machine (Proposer → Reflector → Modifier ⇄ Reflector), not an LLM's pick."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

from autogen_agentchat.agents import AssistantAgent
from autogen_agentchat.base import TerminationCondition
from autogen_agentchat.conditions import MaxMessageTermination, TextMentionTermination
from autogen_agentchat.messages import BaseAgentEvent, BaseChatMessage
from autogen_agentchat.teams import RoundRobinGroupChat, SelectorGroupChat
from autogen_core.models import ChatCompletionClient

from .prompts import load_prompt

MAX_ROUNDS = 5
DESIGN_ROLES = ("Proposer", "Reflector", "Modifier")
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


def termination(max_rounds: int = MAX_ROUNDS) -> TerminationCondition:
    # task + plan + advice + (submission, review) per round
    cap = 3 + 2 * max_rounds
    return (TextMentionTermination("APPROVE", sources=["Reflector"])
            | TextMentionTermination("REJECT", sources=["Reflector"])
            | MaxMessageTermination(cap))


def design_team(clients: Mapping[str, ChatCompletionClient], tools: RoleTools,
                max_rounds: int = MAX_ROUNDS) -> SelectorGroupChat:
    """A fresh team for one trial. `clients` maps each role to its model client."""
    agents = [
        AssistantAgent("Proposer", clients["Proposer"], tools=tools.proposer, system_message=load_prompt("Proposer"),
                       description="Picks an improvement for the block and plans it.", max_tool_iterations=3),
        AssistantAgent("Reflector", clients["Reflector"], tools=tools.reflector,
                       system_message=load_prompt("Reflector"),
                       description="Advises from experience, checks drafts with the validator, approves.",
                       max_tool_iterations=3),
        AssistantAgent("Modifier", clients["Modifier"], tools=tools.modifier, system_message=load_prompt("Modifier"),
                       description="Edits the block graph with typed edit tools.", max_tool_iterations=5),
    ]
    return SelectorGroupChat(agents, model_client=clients["Proposer"], selector_func=next_speaker,
                             termination_condition=termination(max_rounds), allow_repeated_speaker=True)


def reader_team(client: ChatCompletionClient, tools: list) -> RoundRobinGroupChat:
    reader = AssistantAgent("Reader", client, tools=tools, system_message=load_prompt("Reader"),
                            description="Turns papers into inspirations.", max_tool_iterations=2)
    return RoundRobinGroupChat([reader], termination_condition=MaxMessageTermination(2))
