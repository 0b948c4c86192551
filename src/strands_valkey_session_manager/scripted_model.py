"""An offline Strands model that replays a script of canned turns.

``ScriptedModel`` is a real :class:`strands.models.Model`: ``strands.Agent`` (and Graph or Swarm
nodes) run it through the SDK's own event loop, tool executor and session hooks, with no network
and no credentials. Each call to :meth:`ScriptedModel.stream` plays the next turn of the script as
the stream events a provider sends: ``messageStart``, one ``contentBlockStart`` /
``contentBlockDelta`` / ``contentBlockStop`` triple per block, ``messageStop`` with ``end_turn``,
``tool_use`` or ``guardrail_intervened``, then ``metadata`` with token usage.

A turn is written as:

* ``"text"``: a plain text reply;
* ``ToolCall(name, input)`` or a list of them: the model asks for those tools (the SDK then runs
  them and calls the model again, which plays the next turn);
* ``Turn(text=..., tool_calls=..., redact_user=...)``: the general form, e.g. text followed by tool
  calls, or a guardrail that replaces the user's last message with ``redact_user``.

Every request the model receives is recorded in :attr:`ScriptedModel.requests`, so a test can check
what history a restored agent sent.

Adapted from the Strands Agents SDK's test fixture ``tests/fixtures/mocked_model_provider.py``
(strands-agents/sdk-python, Apache-2.0).
"""

from __future__ import annotations

import copy
import itertools
import json
from collections.abc import AsyncGenerator, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from pydantic import BaseModel
from strands.models import Model
from strands.types.content import Messages
from strands.types.event_loop import StopReason, Usage
from strands.types.streaming import StreamEvent
from strands.types.tools import ToolSpec

__all__ = ["ModelRequest", "ScriptExhaustedError", "ScriptedModel", "ToolCall", "Turn", "TurnLike"]

T = TypeVar("T", bound=BaseModel)


class ScriptExhaustedError(RuntimeError):
    """The model was called more often than its script has turns."""


@dataclass(frozen=True)
class ToolCall:
    """One ``toolUse`` block: the model asks the agent to run tool ``name`` with ``input``.

    ``tool_use_id`` defaults to a deterministic id (``tooluse-<n>``, counted per model).
    """

    name: str
    input: Mapping[str, Any] = field(default_factory=dict)
    tool_use_id: str | None = None


@dataclass(frozen=True)
class Turn:
    """One model response.

    Attributes:
        text: Text block sent first, if any.
        tool_calls: ``toolUse`` blocks sent after the text; any makes the stop reason ``tool_use``.
        redact_user: If set, the turn is a guardrail intervention: a ``redactContent`` event asks the
            agent to replace the user's latest message with this text, and the stop reason is
            ``guardrail_intervened``.
    """

    text: str | None = None
    tool_calls: tuple[ToolCall, ...] = ()
    redact_user: str | None = None

    def __post_init__(self) -> None:
        if self.text is None and not self.tool_calls:
            raise ValueError("a turn needs text, tool calls or both")


TurnLike = str | ToolCall | Sequence[ToolCall] | Turn


@dataclass(frozen=True)
class ModelRequest:
    """What the model was asked in one call (messages are a deep copy taken at call time)."""

    messages: Messages
    system_prompt: str | None
    tool_names: tuple[str, ...]


def _as_turn(turn: TurnLike) -> Turn:
    if isinstance(turn, Turn):
        return turn
    if isinstance(turn, str):
        return Turn(text=turn)
    if isinstance(turn, ToolCall):
        return Turn(tool_calls=(turn,))
    calls = tuple(turn)
    if not calls or not all(isinstance(c, ToolCall) for c in calls):
        raise TypeError(f"not a turn: {turn!r}")
    return Turn(tool_calls=calls)


class ScriptedModel(Model):
    """A model that answers each request with the next turn of a fixed script.

    Args:
        turns: The responses, in the order the model will be called.
        model_id: Reported in :meth:`get_config`.
    """

    def __init__(self, turns: Iterable[TurnLike] = (), *, model_id: str = "scripted") -> None:
        self._turns: list[Turn] = [_as_turn(t) for t in turns]
        self._next = 0
        self._tool_use_ids = itertools.count(1)
        self.config: dict[str, Any] = {"model_id": model_id}
        self.requests: list[ModelRequest] = []

    # -- script ------------------------------------------------------------------------------------

    def add_turns(self, *turns: TurnLike) -> None:
        """Append turns to the script (e.g. before the next ``agent(...)`` call)."""
        self._turns.extend(_as_turn(t) for t in turns)

    @property
    def remaining(self) -> int:
        """Turns not played yet."""
        return len(self._turns) - self._next

    def _take(self) -> Turn:
        if self._next >= len(self._turns):
            raise ScriptExhaustedError(f"the script has {len(self._turns)} turns and all were played")
        turn = self._turns[self._next]
        self._next += 1
        return turn

    # -- Model interface ---------------------------------------------------------------------------

    def update_config(self, **model_config: Any) -> None:
        """Merge ``model_config`` into the configuration."""
        self.config.update(model_config)

    def get_config(self) -> dict[str, Any]:
        """The configuration (``model_id`` and whatever was set with :meth:`update_config`)."""
        return dict(self.config)

    async def stream(
        self,
        messages: Messages,
        tool_specs: list[ToolSpec] | None = None,
        system_prompt: str | None = None,
        **kwargs: Any,
    ) -> AsyncGenerator[StreamEvent, None]:
        """Play the next turn of the script as stream events.

        Raises:
            ScriptExhaustedError: If every turn has been played.
        """
        self.requests.append(
            ModelRequest(
                messages=copy.deepcopy(messages),
                system_prompt=system_prompt,
                tool_names=tuple(spec["name"] for spec in tool_specs or ()),
            )
        )
        for event in self._events(self._take()):
            yield event

    async def structured_output(
        self, output_model: type[T], prompt: Messages, system_prompt: str | None = None, **kwargs: Any
    ) -> AsyncGenerator[dict[str, T | Any], None]:
        """Validate the next turn's text as JSON for ``output_model`` and yield ``{"output": instance}``.

        Raises:
            ScriptExhaustedError: If every turn has been played.
            NotImplementedError: If the next turn is not a text-only turn.
            pydantic.ValidationError: If its text does not validate as ``output_model``.
        """
        turn = self._take()
        if turn.text is None or turn.tool_calls or turn.redact_user is not None:
            raise NotImplementedError("ScriptedModel.structured_output needs a text-only turn holding JSON")
        yield {"output": output_model.model_validate_json(turn.text)}

    # -- events ------------------------------------------------------------------------------------

    def _events(self, turn: Turn) -> Iterable[StreamEvent]:
        stop_reason: StopReason = "end_turn"
        output_chars = 0
        yield {"messageStart": {"role": "assistant"}}
        if turn.redact_user is not None:
            stop_reason = "guardrail_intervened"
            yield {"redactContent": {"redactUserContentMessage": turn.redact_user}}
        if turn.text is not None:
            output_chars += len(turn.text)
            yield {"contentBlockStart": {"start": {}}}
            yield {"contentBlockDelta": {"delta": {"text": turn.text}}}
            yield {"contentBlockStop": {}}
        for call in turn.tool_calls:
            if stop_reason == "end_turn":
                stop_reason = "tool_use"
            tool_use_id = call.tool_use_id or f"tooluse-{next(self._tool_use_ids)}"
            arguments = json.dumps(dict(call.input))
            output_chars += len(arguments)
            yield {"contentBlockStart": {"start": {"toolUse": {"name": call.name, "toolUseId": tool_use_id}}}}
            yield {"contentBlockDelta": {"delta": {"toolUse": {"input": arguments}}}}
            yield {"contentBlockStop": {}}
        yield {"messageStop": {"stopReason": stop_reason}}
        output_tokens = max(1, output_chars // 4)
        usage: Usage = {"inputTokens": 1, "outputTokens": output_tokens, "totalTokens": 1 + output_tokens}
        yield {"metadata": {"usage": usage, "metrics": {"latencyMs": 0}}}
