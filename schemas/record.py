"""Canonical conversations and the input formats winnow recognises.

Each format model validates one raw record and turns it into a `Conversation`; `detect_format`
picks the model for a file from the keys of its records.
"""

import re
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictStr, ValidationError, field_validator, model_validator

Role = Literal["system", "user", "assistant"]


class Message(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    role: Role
    content: StrictStr


class Conversation(BaseModel):
    """A conversation that can train a model: optional system turn, then user/assistant turns
    alternating, starting with the user and ending with the assistant."""

    model_config = ConfigDict(frozen=True)

    messages: list[Message]
    category: str | None = None
    rejected: list[Message] | None = None  # the dispreferred conversation of a preference pair

    @model_validator(mode="after")
    def _well_formed(self):
        turns = [m.role for m in self.messages if m.role != "system"]
        if any(m.role == "system" for m in self.messages[1:]):
            raise ValueError("a system message may only come first")
        if not turns:
            raise ValueError("conversation has no user or assistant turns")
        if turns[0] != "user":
            raise ValueError(f"conversation must start with a user turn, starts with {turns[0]}")
        if turns[-1] != "assistant":
            raise ValueError("conversation must end with an assistant turn")
        for a, b in zip(turns, turns[1:]):
            if a == b:
                raise ValueError(f"two {a} turns in a row: turns must alternate")
        return self


class InputFormat(BaseModel):
    """A raw record shape; extra keys (ids, `name`, `keys`, any metadata of any type) are ignored."""

    model_config = ConfigDict(extra="ignore")

    def conversations(self) -> list[Conversation]:
        raise NotImplementedError


# Alpaca's generator wrote "<noinput>" for "this task has no input", and its data spells it many ways
# ("No input", "NoInput", "N/A", "None"): an input field holding only that is empty, not a placeholder to
# keep in the prompt (618 of Alpaca 52K). Placeholders anywhere else are left to the heuristics stage.
NO_INPUT = re.compile(r"(?i)\\?<\s*no\s*-?\s*input\s*>|[\[(]?no\s*-?\s*input(?:\s+(?:required|needed|necessary|provided|given))?"
                      r"[\])]?\.?|n/a\.?|none\.?|null|nan|-")


def _user_text(instruction: str, extra: str | None) -> str:
    """The instruction, then its input (Alpaca `input`, Dolly `context`) unless that is empty or says 'no input'."""
    if not extra or not extra.strip() or NO_INPUT.fullmatch(extra.strip()):
        return instruction
    return f"{instruction}\n\n{extra}"


def _single(user: str, assistant: str, category: str | None = None, system: str | None = None) -> Conversation:
    msgs = [Message(role="system", content=system)] if system and system.strip() else []
    msgs += [Message(role="user", content=user), Message(role="assistant", content=assistant)]
    return Conversation(messages=msgs, category=category)


class Alpaca(InputFormat):
    instruction: StrictStr
    input: StrictStr | None = None
    output: StrictStr

    def conversations(self):
        return [_single(_user_text(self.instruction, self.input), self.output)]


class Dolly(InputFormat):
    instruction: StrictStr
    context: StrictStr | None = None
    response: StrictStr
    category: StrictStr | None = None

    def conversations(self):
        return [_single(_user_text(self.instruction, self.context), self.response, self.category or None)]


SHAREGPT_ROLES = {"human": "user", "user": "user", "gpt": "assistant", "chatgpt": "assistant",
                  "assistant": "assistant", "bard": "assistant", "bing": "assistant", "model": "assistant",
                  "system": "system"}


class ShareGPTTurn(BaseModel):
    from_: StrictStr = Field(alias="from")
    value: StrictStr

    @field_validator("from_")
    @classmethod
    def _known_role(cls, v: str) -> str:
        if v.lower() not in SHAREGPT_ROLES:
            raise ValueError(f"unknown speaker {v!r}")
        return v


class ShareGPT(InputFormat):
    conversations_: list[ShareGPTTurn] = Field(alias="conversations")

    def conversations(self, skip_leading_replies: bool = False):
        messages = [Message(role=SHAREGPT_ROLES[t.from_.lower()], content=t.value) for t in self.conversations_]
        if skip_leading_replies:
            system = messages[:1] if messages and messages[0].role == "system" else []
            rest = messages[len(system):]
            while rest and rest[0].role == "assistant":
                rest = rest[1:]
            if not rest and len(messages) > len(system):
                raise ValueError("conversation has no user turn, only replies to a message the dump lost")
            messages = system + rest
        return [Conversation(messages=messages)]


TEXT_PARTS = ("text", "input_text", "output_text")
TOOL_ROLES = ("tool", "function", "ipython")
TOOL_USE = ("tool-use conversation (assistant tool_calls, or tool/function turns): winnow curates "
            "text conversations only, and its trainer would learn the calls as empty replies")


class ContentPart(BaseModel):
    model_config = ConfigDict(extra="ignore")
    type: StrictStr
    text: StrictStr | None = None


class OpenAITurn(BaseModel):
    """One OpenAI chat message: `content` a string or a list of text parts; `developer` is the system role."""

    model_config = ConfigDict(extra="ignore")
    role: Literal["system", "developer", "user", "assistant"]
    content: StrictStr | list[ContentPart]

    @field_validator("content")
    @classmethod
    def _text_only(cls, v: str | list[ContentPart]) -> str:
        if isinstance(v, str):
            return v
        other = next((p.type for p in v if p.type not in TEXT_PARTS or p.text is None), None)
        if other is not None:
            raise ValueError(f"a {other!r} content part: winnow curates text only")
        return "\n\n".join(p.text for p in v)

    def message(self) -> Message:
        return Message(role="system" if self.role == "developer" else self.role, content=self.content)


def _uses_tools(messages: object) -> bool:
    """Any turn that calls a tool or carries a tool's answer."""
    return isinstance(messages, list) and any(
        isinstance(m, dict) and (m.get("role") in TOOL_ROLES or m.get("tool_calls") or m.get("function_call"))
        for m in messages)


class OpenAI(InputFormat):
    messages: list[OpenAITurn]

    @model_validator(mode="before")
    @classmethod
    def _no_tools(cls, data):
        if isinstance(data, dict) and _uses_tools(data.get("messages")):
            raise ValueError(TOOL_USE)
        return data

    def conversations(self):
        return [Conversation(messages=[m.message() for m in self.messages])]


TRANSCRIPT_TURN = re.compile(r"\n\n(Human|Assistant):[ \t]?")
TRANSCRIPT_ROLES = {"Human": "user", "Assistant": "assistant"}


def parse_transcript(text: str) -> list[Message]:
    """An HH-RLHF transcript ("\\n\\nHuman: ... \\n\\nAssistant: ...") as turns."""
    parts = TRANSCRIPT_TURN.split(text if text.startswith("\n\n") else "\n\n" + text)
    if len(parts) < 3:
        raise ValueError("no 'Human:' / 'Assistant:' turns in the transcript")
    if parts[0].strip():
        raise ValueError("text before the first 'Human:' or 'Assistant:' turn")
    return [Message(role=TRANSCRIPT_ROLES[role], content=content) for role, content in zip(parts[1::2], parts[2::2])]


class Preference(InputFormat):
    """A preference pair: `chosen` is curated, `rejected` kept beside it in the ledger.

    Anthropic HH-RLHF (each side a "Human: / Assistant:" transcript), TRL's `prompt` + `chosen` +
    `rejected` strings, or each side a list of {role, content} messages.
    """

    prompt: StrictStr | None = None
    chosen: StrictStr | list[Message]
    rejected: StrictStr | list[Message]

    def _side(self, side: str | list[Message]) -> list[Message]:
        if isinstance(side, list):
            return side
        if self.prompt is not None:
            return [Message(role="user", content=self.prompt), Message(role="assistant", content=side)]
        return parse_transcript(side)

    def conversations(self):
        try:
            rejected = Conversation(messages=self._side(self.rejected)).messages
        except ValidationError as err:
            raise ValueError(f"rejected: {err.errors()[0]['msg'].removeprefix('Value error, ')}") from None
        except ValueError as err:
            raise ValueError(f"rejected: {err}") from None
        return [Conversation(messages=self._side(self.chosen), rejected=rejected)]


class PromptCompletion(InputFormat):
    prompt: StrictStr
    completion: StrictStr

    def conversations(self):
        return [_single(self.prompt, self.completion)]


class Lima(InputFormat):
    """LIMA: `conversations` is a list of strings, user first, alternating."""

    conversations_: list[StrictStr] = Field(alias="conversations")

    def conversations(self):
        roles = ("user", "assistant")
        return [Conversation(messages=[Message(role=roles[i % 2], content=t) for i, t in enumerate(self.conversations_)])]


class Instance(BaseModel):
    input: StrictStr = ""
    output: StrictStr


class SelfInstruct(InputFormat):
    """Self-instruct seed task: one record per instance."""

    instruction: StrictStr
    instances: Annotated[list[Instance], Field(min_length=1)]

    def conversations(self):
        return [_single(_user_text(self.instruction, i.input), i.output) for i in self.instances]


# Detection order matters: the first format whose marker keys a record has wins.
FORMATS: dict[str, tuple[type[InputFormat], tuple[str, ...]]] = {
    "openai": (OpenAI, ("messages",)),
    "preference": (Preference, ("chosen", "rejected")),
    "self_instruct": (SelfInstruct, ("instruction", "instances")),
    "dolly": (Dolly, ("instruction", "response")),
    "alpaca": (Alpaca, ("instruction", "output")),
    "prompt_completion": (PromptCompletion, ("prompt", "completion")),
    "conversations": (ShareGPT, ("conversations",)),  # ShareGPT or LIMA, told apart by the turns
}


def detect_format(records: list[dict]) -> str | None:
    """Name the format of a file from its first records, or None when nothing matches."""
    votes: dict[str, int] = {}
    for rec in records:
        name = next((n for n, (_, keys) in FORMATS.items() if all(k in rec for k in keys)), None)
        if name == "conversations":
            turns = rec["conversations"]
            name = "lima" if isinstance(turns, list) and turns and all(isinstance(t, str) for t in turns) else "sharegpt"
        if name:
            votes[name] = votes.get(name, 0) + 1
    return max(sorted(votes), key=votes.get) if votes else None


MODELS: dict[str, type[InputFormat]] = {
    "openai": OpenAI, "preference": Preference, "self_instruct": SelfInstruct, "dolly": Dolly, "alpaca": Alpaca,
    "prompt_completion": PromptCompletion, "sharegpt": ShareGPT, "lima": Lima,
}
