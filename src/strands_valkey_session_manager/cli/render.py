"""Terminal rendering for the ``svsm`` command line tool: tables, conversations, sizes and times.

Everything stored is data, never markup: user text goes into ``rich.text.Text`` objects, so a message
holding ``[bold]`` or ANSI escapes prints as written.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from rich.cells import cell_len
from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text
from strands.types.session import SessionAgent, SessionMessage

from ..catalog import SessionInfo
from ..migration import MigrationReport
from .humanize import duration, size

_ROLE_STYLE = {"user": "bold cyan", "assistant": "bold green", "system": "bold magenta"}
_MEDIA = ("image", "document", "video", "audio")


def timestamp(value: datetime | str | None) -> str:
    """A UTC time to the second, ``2026-01-31 17:04:05``; SDK ISO strings are parsed first."""
    if value is None or value == "":
        return "-"
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            return value
        value = parsed
    if value.tzinfo is not None:
        value = value.astimezone(timezone.utc)
    return value.strftime("%Y-%m-%d %H:%M:%S")


def to_json(value: Any, *, indent: int | None = None) -> str:
    """JSON text of state or tool input; bytes show as their size instead of their content."""
    return json.dumps(_printable(value), ensure_ascii=False, indent=indent, default=str)


def _printable(value: Any) -> Any:
    if isinstance(value, (bytes, bytearray, memoryview)):
        return f"<{size(len(value))}>"
    if isinstance(value, Mapping):
        return {str(k): _printable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_printable(v) for v in value]
    return value


# -- sessions ---------------------------------------------------------------------------------------


def session_row(info: SessionInfo, orchestrators: Sequence[str] | None = None) -> dict[str, Any]:
    """One session as plain JSON values (``svsm sessions --json``), with its orchestrators' ids
    when given."""
    row = {
        "session_id": info.session_id,
        "user_id": info.user_id,
        "tags": list(info.tags),
        "agents": info.agent_ids,
        "messages": info.message_count,
        "message_counts": dict(sorted(info.message_counts.items())),
        "created_at": info.created_at.isoformat(),
        "updated_at": info.updated_at.isoformat(),
        "expires_in": info.expires_in,
    }
    if orchestrators is not None:
        row["orchestrators"] = list(orchestrators)
    return row


_HEADERS = ("session", "user", "tags", "agents", "messages", "created (UTC)", "updated (UTC)", "TTL left")
_ORCHESTRATORS = "orchestrators"


def _cells(info: SessionInfo, orchestrators: Mapping[str, Sequence[str]] | None) -> list[str]:
    cells = [
        info.session_id,
        info.user_id or "-",
        ", ".join(info.tags) or "-",
        str(len(info.message_counts)),
        str(info.message_count),
        timestamp(info.created_at),
        timestamp(info.updated_at),
        duration(info.expires_in),
    ]
    if orchestrators is not None:
        cells.insert(5, str(len(orchestrators.get(info.session_id, ()))))
    return cells


def sessions_table(infos: Sequence[SessionInfo], orchestrators: Mapping[str, Sequence[str]] | None = None) -> Table:
    """The ``svsm sessions`` table, newest first as listed; with ``orchestrators`` (ids by session
    id) an orchestrators column too. Cells never wrap: :func:`sessions_view` picks another layout
    when the table does not fit."""
    headers = list(_HEADERS)
    if orchestrators is not None:
        headers.insert(5, _ORCHESTRATORS)
    table = Table(show_edge=False, pad_edge=False)
    for header in headers:
        numeric = header in ("agents", "messages", _ORCHESTRATORS, "TTL left")
        table.add_column(header, justify="right" if numeric else "left", no_wrap=True)
    for info in infos:
        table.add_row(*(Text(cell) for cell in _cells(info, orchestrators)))
    return table


def table_width(infos: Sequence[SessionInfo], orchestrators: Mapping[str, Sequence[str]] | None = None) -> int:
    """Columns :func:`sessions_table` needs to show every cell whole."""
    headers = list(_HEADERS)
    if orchestrators is not None:
        headers.insert(5, _ORCHESTRATORS)
    rows = [_cells(info, orchestrators) for info in infos]
    widths = [max([cell_len(h)] + [cell_len(row[i]) for row in rows]) for i, h in enumerate(headers)]
    return sum(widths) + 3 * (len(widths) - 1)  # " │ " between columns


def sessions_stacked(infos: Sequence[SessionInfo], orchestrators: Mapping[str, Sequence[str]] | None = None) -> Group:
    """Sessions as blocks of short lines (a narrow terminal): the id whole on its own line."""
    lines: list[RenderableType] = []
    for n, info in enumerate(infos):
        if n:
            lines.append(Text(""))
        lines.append(Text(info.session_id, style="bold"))
        owner = Text("  user ", style="dim").append(info.user_id or "-", style="")
        owner.append(" · tags ", style="dim").append(", ".join(info.tags) or "-", style="")
        lines.append(owner)
        agents = len(info.message_counts)
        counts = f"  {agents} {'agent' if agents == 1 else 'agents'} · {info.message_count} messages"
        if orchestrators is not None:
            count = len(orchestrators.get(info.session_id, ()))
            counts += f" · {count} {'orchestrator' if count == 1 else 'orchestrators'}"
        lines.append(Text(counts + f" · TTL left {duration(info.expires_in)}"))
        lines.append(
            Text(f"  created {timestamp(info.created_at)} · updated {timestamp(info.updated_at)} UTC", style="dim")
        )
    return Group(*lines)


def sessions_view(
    infos: Sequence[SessionInfo], *, width: int, orchestrators: Mapping[str, Sequence[str]] | None = None
) -> RenderableType:
    """The table when it fits in ``width`` columns, else :func:`sessions_stacked`: ids, users and
    tags are never cut or folded."""
    if table_width(infos, orchestrators) <= width:
        return sessions_table(infos, orchestrators)
    return sessions_stacked(infos, orchestrators)


# -- conversations ----------------------------------------------------------------------------------


def media(kind: str, content: Mapping[str, Any]) -> str:
    """Placeholder for an image, document, video or audio block: ``[image png, 12.3 KiB]``."""
    parts = [kind]
    if content.get("format"):
        parts.append(str(content["format"]))
    label = " ".join(parts)
    if content.get("name"):
        label += f" {json.dumps(str(content['name']), ensure_ascii=False)}"
    source = content.get("source")
    where = ""
    if isinstance(source, Mapping):
        data = source.get("bytes")
        if isinstance(data, (bytes, bytearray, memoryview)):
            where = size(len(data))
        elif source:
            where = ", ".join(str(k) for k in source)
    return f"[{label}, {where}]" if where else f"[{label}]"


def content_lines(block: Mapping[str, Any]) -> list[Text]:
    """One content block of a message as lines of text."""
    if "text" in block:
        return [Text(str(block["text"]))]
    if "toolUse" in block:
        use = block["toolUse"]
        line = Text("→ tool call ", style="yellow")
        line.append(str(use.get("name", "?")), style="bold yellow")
        line.append(f" ({use.get('toolUseId', '?')}) ", style="dim")
        line.append(to_json(use.get("input")))
        return [line]
    if "toolResult" in block:
        result = block["toolResult"]
        status = str(result.get("status", "?"))
        head = Text("← tool result ", style="yellow")
        head.append(f"({result.get('toolUseId', '?')}) ", style="dim")
        head.append(status, style="red" if status == "error" else "green")
        lines = [head]
        for item in result.get("content") or []:
            lines.extend(Text("  ").append_text(line) for line in _result_item(item))
        return lines
    for kind in _MEDIA:
        if kind in block:
            return [Text(media(kind, block[kind]), style="magenta")]
    if "reasoningContent" in block:
        reasoning = block["reasoningContent"].get("reasoningText") or {}
        text = reasoning.get("text") if isinstance(reasoning, Mapping) else None
        return [Text(f"[reasoning] {text}" if text else "[reasoning, redacted]", style="dim italic")]
    if "guardContent" in block:
        guarded = block["guardContent"].get("text") or {}
        return [Text(f"[guarded] {guarded.get('text', '') if isinstance(guarded, Mapping) else guarded}")]
    if "citationsContent" in block:
        texts = [c.get("text", "") for c in block["citationsContent"].get("content") or [] if isinstance(c, Mapping)]
        return [Text(" ".join(texts) + " [with citations]")]
    if "cachePoint" in block:
        return [Text("[cache point]", style="dim")]
    return [Text(f"[{', '.join(block) or 'empty block'}]", style="dim")]


def _result_item(item: Mapping[str, Any]) -> list[Text]:
    if "text" in item:
        return [Text(str(item["text"]))]
    if "json" in item:
        return [Text(to_json(item["json"]))]
    for kind in _MEDIA:
        if kind in item:
            return [Text(media(kind, item[kind]), style="magenta")]
    return [Text(f"[{', '.join(item) or 'empty'}]", style="dim")]


def message(record: SessionMessage) -> RenderableType:
    """One stored message: a header (role, id, time), then its blocks."""
    body = record.message
    role = str(body.get("role", "?"))
    head = Text(f"{role} ", style=_ROLE_STYLE.get(role, "bold"))
    head.append(f"#{record.message_id} · {timestamp(record.created_at)}", style="dim")
    lines: list[RenderableType] = [head]
    for block in body.get("content") or []:
        lines.extend(Text("  ").append_text(line) for line in content_lines(block))
    if record.redact_message is not None:
        lines.append(Text("  [redacted: the model is sent a replacement]", style="red"))
    return Group(*lines)


@dataclass(frozen=True)
class Sealed:
    """A stored record that could not be opened (encrypted, and no key or not the right one): what
    its plaintext envelope tells."""

    message_id: Any = None
    created_at: Any = None


#: What an agent's record is shown as when it could not be opened.
SEALED_AGENT = Sealed()


def sealed_message(record: Sealed) -> RenderableType:
    """A message that could not be opened, in its place: id and time, then ``[encrypted]``."""
    head = Text("message ", style="bold")
    head.append(f"#{record.message_id} · {timestamp(record.created_at)}", style="dim")
    return Group(head, Text("  [encrypted]", style="magenta"))


def agent_header(agent: SessionAgent | Sealed | None, agent_id: str, shown: int, stored: int) -> RenderableType:
    """An agent's title, state and conversation-manager state."""
    title = Text("agent ", style="bold")
    title.append(agent_id, style="bold underline")
    note = f" · {stored} messages stored" + (f", last {shown} shown" if shown < stored else "")
    title.append(note, style="dim")
    lines: list[RenderableType] = [title]
    if agent is None:
        lines.append(Text("  (agent record missing)", style="red"))
        return Group(*lines)
    if isinstance(agent, Sealed):
        lines.append(Text("  state: ", style="bold").append("encrypted", style="magenta"))
        lines.append(Text("  conversation manager: ", style="bold").append("encrypted", style="magenta"))
        return Group(*lines)
    lines.append(Text("  state: ", style="bold").append(to_json(agent.state)))
    lines.append(Text("  conversation manager: ", style="bold").append(to_json(agent.conversation_manager_state)))
    return Group(*lines)


def session_header(info: SessionInfo, session_type: str) -> RenderableType:
    """The session's title and catalog metadata."""
    title = Text("session ", style="bold")
    title.append(info.session_id, style="bold underline")
    details = [
        f"type {session_type}",
        f"created {timestamp(info.created_at)} UTC",
        f"updated {timestamp(info.updated_at)} UTC",
        f"TTL left {duration(info.expires_in)}",
    ]
    if info.user_id:
        details.append(f"user {info.user_id}")
    if info.tags:
        details.append(f"tags {', '.join(info.tags)}")
    return Group(title, Text("  " + " · ".join(details), style="dim"))


# -- orchestrators (Graph, Swarm) -----------------------------------------------------------------

_SUMMARY_CHARS = 120


def _ids(value: Any) -> list[str]:
    return [str(v) for v in value] if isinstance(value, list) else []


def _short(text: str) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= _SUMMARY_CHARS else flat[: _SUMMARY_CHARS - 1] + "…"


def _task_text(task: Any) -> str:
    if isinstance(task, str):
        return task
    if isinstance(task, list):  # content blocks
        parts = [" ".join(t.plain for t in content_lines(b)) for b in task if isinstance(b, Mapping)]
        return " ".join(parts)
    return to_json(task)


def _result_summary(result: Any) -> str:
    """One line of a node's result: the agent's last text, an error, or a nested run's status."""
    if not isinstance(result, Mapping):
        return ""
    kind = result.get("type")
    if kind == "agent_result":
        message = result.get("message")
        blocks = message.get("content") if isinstance(message, Mapping) else None
        texts = [str(b["text"]) for b in blocks or [] if isinstance(b, Mapping) and "text" in b]
        return _short(" ".join(texts))
    if kind == "exception":
        return _short(f"error: {result.get('message', '')}")
    if kind == "multiagent_result":
        return f"nested run, status {result.get('status', '?')}"
    return ""


def _usage(state: Mapping[str, Any]) -> str:
    parts = []
    usage = state.get("accumulated_usage")
    if isinstance(usage, Mapping) and ("inputTokens" in usage or "outputTokens" in usage):
        parts.append(f"{usage.get('inputTokens', 0)} input, {usage.get('outputTokens', 0)} output tokens")
    if isinstance(state.get("execution_count"), int):
        parts.append(f"{state['execution_count']} node executions")
    if isinstance(state.get("execution_time"), (int, float)):
        parts.append(f"{state['execution_time']} ms")
    return " · ".join(parts)


def orchestrator(multi_id: str, state: Mapping[str, Any] | Sealed) -> RenderableType:
    """A Graph's or a Swarm's stored state (``serialize_state()``): status, nodes, order, results,
    handoffs. Other orchestrators' state is shown as JSON."""
    title = Text("orchestrator ", style="bold")
    title.append(multi_id, style="bold underline")
    if isinstance(state, Sealed):
        return Group(title.append(" · ", style="dim").append("encrypted", style="magenta"))
    kind = str(state.get("type", "?"))
    title.append(f" · {kind} · status {state.get('status', '?')}", style="dim")
    lines: list[RenderableType] = [title]

    def field(label: str, value: str) -> None:
        if value:
            lines.append(Text(f"  {label}: ", style="bold").append(value))

    if kind not in ("graph", "swarm"):
        field("state", to_json(state))
        return Group(*lines)
    if "current_task" in state:
        field("task", _short(_task_text(state["current_task"])))
    if kind == "graph":
        field("execution order", " → ".join(_ids(state.get("execution_order"))))
        field("completed nodes", ", ".join(_ids(state.get("completed_nodes"))))
        field("failed nodes", ", ".join(_ids(state.get("failed_nodes"))))
        field("interrupted nodes", ", ".join(_ids(state.get("interrupted_nodes"))))
    else:
        field("node history", " → ".join(_ids(state.get("node_history"))))
    field("next nodes", ", ".join(_ids(state.get("next_nodes_to_execute"))))
    context = state.get("context")
    if isinstance(context, Mapping):
        if context.get("handoff_node"):
            field("handoff to", str(context["handoff_node"]))
        if context.get("handoff_message"):
            field("handoff message", _short(str(context["handoff_message"])))
        if context.get("shared_context"):
            field("shared context", to_json(context["shared_context"]))
    field("usage", _usage(state))
    results = state.get("node_results")
    if isinstance(results, Mapping) and results:
        lines.append(Text("  results:", style="bold"))
        for node_id, result in results.items():
            line = Text(f"    {node_id}: ")
            status = str(result.get("status", "?")) if isinstance(result, Mapping) else "?"
            line.append(status, style="red" if status == "failed" else "green" if status == "completed" else "")
            summary = _result_summary(result.get("result")) if isinstance(result, Mapping) else ""
            if summary:
                line.append(f" · {summary}")
            lines.append(line)
    return Group(*lines)


# -- migrations -------------------------------------------------------------------------------------


def migration_summary(report: MigrationReport) -> Iterable[Text]:
    """Lines summing up a migration report."""
    verb = "would migrate" if report.dry_run else "migrated"
    replaced = f" ({report.sessions_replaced} partial copies replaced)" if report.sessions_replaced else ""
    yield Text(
        f"{verb} {report.sessions_migrated} of {report.sessions_found} sessions{replaced}: "
        f"{report.agents_migrated} agents, {report.messages_migrated} messages, "
        f"{report.multi_agents_migrated} orchestrator states"
    )
    if report.sessions_skipped:
        yield Text(
            f"skipped {report.sessions_skipped} sessions already in the target: "
            f"{report.agents_skipped} agents, {report.messages_skipped} messages"
        )
    if report.unrecognised:
        examples = ", ".join(report.unrecognised_examples[:5])
        yield Text(f"left alone {report.unrecognised} keys or paths outside the layout (e.g. {examples})", style="dim")
    for session_id, reason in report.failures.items():
        yield Text(f"failed {session_id}: {reason}", style="red")
