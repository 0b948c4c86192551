"""The offline model the end-to-end tests and the demo run: its stream events and its edges."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from pydantic import BaseModel, ValidationError
from strands import Agent

from strands_valkey_session_manager.scripted_model import ScriptedModel, ScriptExhaustedError, ToolCall, Turn


def _events(model: ScriptedModel) -> list[Any]:
    async def collect() -> list[Any]:
        return [event async for event in model.stream([{"role": "user", "content": [{"text": "hi"}]}])]

    return asyncio.run(collect())


def test_text_turn_streams_one_text_block_and_end_turn() -> None:
    events = _events(ScriptedModel(["hello"]))

    assert events[:5] == [
        {"messageStart": {"role": "assistant"}},
        {"contentBlockStart": {"start": {}}},
        {"contentBlockDelta": {"delta": {"text": "hello"}}},
        {"contentBlockStop": {}},
        {"messageStop": {"stopReason": "end_turn"}},
    ]
    assert set(events[5]["metadata"]) == {"usage", "metrics"}
    assert len(events) == 6


def test_tool_turn_streams_tool_use_blocks_and_tool_use_stop() -> None:
    events = _events(ScriptedModel([Turn(text="checking", tool_calls=(ToolCall("a", {"x": 1}), ToolCall("b")))]))

    starts = [e["contentBlockStart"]["start"] for e in events if "contentBlockStart" in e]
    assert starts == [
        {},
        {"toolUse": {"name": "a", "toolUseId": "tooluse-1"}},
        {"toolUse": {"name": "b", "toolUseId": "tooluse-2"}},
    ]
    deltas = [e["contentBlockDelta"]["delta"] for e in events if "contentBlockDelta" in e]
    assert deltas == [{"text": "checking"}, {"toolUse": {"input": '{"x": 1}'}}, {"toolUse": {"input": "{}"}}]
    assert {"messageStop": {"stopReason": "tool_use"}} in events


def test_guardrail_turn_asks_to_redact_the_user_message() -> None:
    events = _events(ScriptedModel([Turn(text="no", redact_user="[blocked]")]))

    assert events[1] == {"redactContent": {"redactUserContentMessage": "[blocked]"}}
    assert {"messageStop": {"stopReason": "guardrail_intervened"}} in events


def test_turn_shorthands() -> None:
    model = ScriptedModel(["text", ToolCall("t"), [ToolCall("t"), ToolCall("u")]])
    model.add_turns("more")
    assert model.remaining == 4
    with pytest.raises(TypeError):
        ScriptedModel([[]])
    with pytest.raises(ValueError, match="needs text"):
        Turn()


def test_exhausted_script_raises() -> None:
    model = ScriptedModel(["only"])
    _events(model)
    with pytest.raises(ScriptExhaustedError, match="1 turns"):
        _events(model)


def test_agent_runs_the_script_and_records_requests() -> None:
    model = ScriptedModel(["first", "second"], model_id="demo")
    agent = Agent(model=model, system_prompt="be brief", callback_handler=None)

    assert str(agent("one")).strip() == "first"
    assert str(agent("two")).strip() == "second"
    assert model.remaining == 0
    assert [len(r.messages) for r in model.requests] == [1, 3]
    assert model.requests[0].system_prompt == "be brief"
    assert model.get_config() == {"model_id": "demo"}
    model.update_config(temperature=0)
    assert model.get_config() == {"model_id": "demo", "temperature": 0}


class _City(BaseModel):
    name: str
    population: int


def _structured(model: ScriptedModel) -> list[Any]:
    async def collect() -> list[Any]:
        return [e async for e in model.structured_output(_City, [{"role": "user", "content": [{"text": "?"}]}])]

    return asyncio.run(collect())


def test_structured_output_validates_a_json_text_turn() -> None:
    assert _structured(ScriptedModel(['{"name": "Oslo", "population": 700000}'])) == [
        {"output": _City(name="Oslo", population=700000)}
    ]
    with pytest.raises(ValidationError):
        _structured(ScriptedModel(['{"name": "Oslo"}']))
    with pytest.raises(NotImplementedError):
        _structured(ScriptedModel([ToolCall("t")]))
