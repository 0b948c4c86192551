"""Stored records to what the templates show: safe Markdown, JSON text, content blocks, ids in URLs.

Everything here returns either plain text (which the templates escape) or :class:`markupsafe.Markup`
built only by markdown-it with raw HTML disabled, so no stored value can become markup.
"""

from __future__ import annotations

import base64
import difflib
import json
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any
from urllib.parse import quote, unquote, urlencode

from markdown_it import MarkdownIt
from markupsafe import Markup

from ..humanize import duration

#: Longest text rendered as Markdown; the rest is cut (the export keeps everything).
MAX_TEXT_CHARS = 100_000
#: Longest JSON shown for one value.
MAX_JSON_CHARS = 200_000
#: Largest image inlined as a ``data:`` URI (snapshots only; stored messages use the block endpoint).
MAX_INLINE_IMAGE_BYTES = 2 * 1024 * 1024

IMAGE_TYPES = {"png": "image/png", "jpeg": "image/jpeg", "jpg": "image/jpeg", "gif": "image/gif", "webp": "image/webp"}
DOCUMENT_TYPES = {
    "pdf": "application/pdf",
    "csv": "text/csv",
    "doc": "application/msword",
    "docx": "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    "xls": "application/vnd.ms-excel",
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    "html": "text/html",
    "txt": "text/plain",
    "md": "text/markdown",
}
VIDEO_TYPES = {
    "mp4": "video/mp4",
    "webm": "video/webm",
    "mov": "video/quicktime",
    "mkv": "video/x-matroska",
    "flv": "video/x-flv",
    "mpeg": "video/mpeg",
    "mpg": "video/mpeg",
    "wmv": "video/x-ms-wmv",
    "three_gp": "video/3gpp",
}
#: Content block kinds whose ``source.bytes`` the block endpoint serves.
MEDIA_KINDS = ("image", "document", "video")

_markdown = MarkdownIt("commonmark", {"html": False, "breaks": True, "linkify": False, "typographer": False})
# An image in a message would make the browser fetch a URL chosen by whoever wrote the message.
_markdown.disable("image")
_UNSAFE_FILENAME = re.compile(r"[^\w.\- ]+")


# -- ids in URLs ---------------------------------------------------------------------------------


def id_segment(value: str) -> str:
    """One URL path segment for an id: any character, ``/`` ``?`` ``#`` and Unicode included.

    Percent-encodes everything outside the unreserved set. Browsers resolve the segments ``.``
    and ``..`` (even percent-encoded) before sending a request, so those two ids, and every id
    that starts with ``~``, get a leading ``~`` that :func:`id_from_segment` removes.
    """
    if value.startswith("~") or value in (".", ".."):
        value = "~" + value
    return quote(value, safe="")


def id_from_segment(segment: str) -> str:
    """Invert :func:`id_segment` on a still percent-encoded segment.

    Raises:
        ValueError: If the segment is not valid percent-encoded UTF-8.
    """
    value = unquote(segment, errors="strict")
    return value[1:] if value.startswith("~") else value


def query(**params: Any) -> str:
    """``?a=1&b=2`` from the parameters that are not ``None`` (empty string when none are)."""
    items = {k: str(v) for k, v in params.items() if v is not None and v != ""}
    return "?" + urlencode(items) if items else ""


# -- text, numbers, times ------------------------------------------------------------------------


def markdown(text: str) -> Markup:
    """Markdown as HTML with raw HTML shown as text, dangerous link schemes refused, no images."""
    if len(text) > MAX_TEXT_CHARS:
        text = text[:MAX_TEXT_CHARS] + f"\n\n… ({len(text) - MAX_TEXT_CHARS:,} more characters in the export)"
    # markdown-it escapes all text and drops raw HTML, so its output is safe markup.
    return Markup(_markdown.render(text))


def pretty_json(value: Any) -> str:
    """Indented JSON for people; bytes show as their length, huge values are cut."""
    text = json.dumps(_jsonable(value), indent=2, ensure_ascii=False, sort_keys=False)
    if len(text) > MAX_JSON_CHARS:
        text = text[:MAX_JSON_CHARS] + f"\n… ({len(text) - MAX_JSON_CHARS:,} more characters in the export)"
    return text


def _jsonable(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (bytes, bytearray, memoryview)):
        return f"<{len(value):,} bytes>"
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return repr(value)


def ago(moment: datetime | str | None, now: datetime | None = None) -> str:
    """How long ago: ``12m ago``; ``-`` when unknown."""
    when = parse_time(moment)
    if when is None:
        return "-"
    now = now or datetime.now(timezone.utc)
    seconds = (now - when).total_seconds()
    return "just now" if seconds < 1 else f"{duration(seconds)} ago"


def parse_time(moment: datetime | str | None) -> datetime | None:
    """A timezone-aware datetime from a datetime or an ISO 8601 string; ``None`` if unreadable."""
    if isinstance(moment, datetime):
        return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)
    if isinstance(moment, str) and moment:
        try:
            return parse_time(datetime.fromisoformat(moment.replace("Z", "+00:00")))
        except ValueError:
            return None
    return None


def timestamp(moment: datetime | str | None) -> str:
    """``2025-01-31 12:00:05 UTC`` or ``-``."""
    when = parse_time(moment)
    return "-" if when is None else when.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def timestamp_ms(moment: datetime | str | None) -> str:
    """``2025-01-31 12:00:05.123 UTC`` or ``-``."""
    when = parse_time(moment)
    return "-" if when is None else when.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3] + " UTC"


def safe_filename(name: str, extension: str) -> str:
    """A download file name without path separators or control characters."""
    stem = _UNSAFE_FILENAME.sub("_", name).strip(" .") or "download"
    ext = _UNSAFE_FILENAME.sub("", extension)[:10]
    return f"{stem[:100]}.{ext}" if ext and not stem.endswith("." + ext) else stem[:100]


def content_disposition(filename: str) -> str:
    """An ``attachment`` header value that survives any file name (RFC 6266 ``filename*``)."""
    ascii_name = filename.encode("ascii", "replace").decode("ascii").replace('"', "_").replace("?", "_")
    return f"attachment; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(filename, safe='')}"


# -- content blocks ------------------------------------------------------------------------------


@dataclass
class BlockView:
    """One content block as the templates show it."""

    kind: str
    #: Markdown-rendered text (``text``, ``reasoning``).
    html: Markup | None = None
    #: Heading: tool name, document name, block type.
    title: str = ""
    #: Pretty JSON (tool input, JSON results, unknown blocks).
    json: str | None = None
    #: Where the bytes of a medium can be fetched (image ``src``, download ``href``).
    url: str | None = None
    fmt: str = ""
    byte_count: int | None = None
    status: str = ""
    tool_use_id: str = ""
    children: list[BlockView] = field(default_factory=list)

    @property
    def inline(self) -> bool:
        """An image the browser can show (a raster format, with a URL)."""
        return self.kind == "image" and self.url is not None and self.fmt.lower() in IMAGE_TYPES


#: Builds the URL of a medium from its position (top-level block index, then index inside a
#: ``toolResult``), its kind and its bytes; ``None`` when it cannot be shown.
MediaUrl = Callable[[tuple[int, ...], str, str, bytes], "str | None"]


def block_views(
    content: Any, media_url: MediaUrl, path: tuple[int, ...] = (), tool_names: Mapping[str, str] | None = None
) -> list[BlockView]:
    """Views of a message's content blocks (or a tool result's content).

    ``tool_names`` maps ``toolUseId`` to the tool's name: a ``toolResult`` block holds only the id,
    the name is in the ``toolUse`` block of the message that asked for it.
    """
    if not isinstance(content, Sequence) or isinstance(content, (str, bytes)):
        return [BlockView(kind="json", title="content", json=pretty_json(content))]
    names = tool_names or {}
    return [_block_view(block, media_url, (*path, n), names) for n, block in enumerate(content)]


def tool_names_of(messages: Sequence[Mapping[str, Any] | None]) -> dict[str, str]:
    """``toolUseId`` to tool name for every ``toolUse`` block of these messages."""
    names: dict[str, str] = {}
    for message in messages:
        content = message.get("content") if isinstance(message, Mapping) else None
        if not isinstance(content, Sequence) or isinstance(content, (str, bytes)):
            continue
        for block in content:
            body = block.get("toolUse") if isinstance(block, Mapping) else None
            if isinstance(body, Mapping) and isinstance(body.get("toolUseId"), str):
                names[body["toolUseId"]] = str(body.get("name", ""))
    return names


def _block_view(block: Any, media_url: MediaUrl, path: tuple[int, ...], tool_names: Mapping[str, str]) -> BlockView:
    if not isinstance(block, Mapping) or len(block) != 1:
        return BlockView(kind="json", title="block", json=pretty_json(block))
    ((kind, body),) = block.items()
    if kind == "text" and isinstance(body, str):
        return BlockView(kind="text", html=markdown(body))
    if kind == "toolUse" and isinstance(body, Mapping):
        return BlockView(
            kind="tool_use",
            title=str(body.get("name", "")),
            tool_use_id=str(body.get("toolUseId", "")),
            json=pretty_json(body.get("input")),
        )
    if kind == "toolResult" and isinstance(body, Mapping):
        return BlockView(
            kind="tool_result",
            title=tool_names.get(str(body.get("toolUseId", "")), ""),
            status=str(body.get("status", "")),
            tool_use_id=str(body.get("toolUseId", "")),
            children=block_views(body.get("content", []), media_url, path) if len(path) == 1 else [],
        )
    if kind == "json":
        return BlockView(kind="json", title="json", json=pretty_json(body))
    if kind in MEDIA_KINDS and isinstance(body, Mapping):
        data = media_bytes(body)
        fmt = str(body.get("format", ""))
        title = str(body.get("name", "")) if kind == "document" else ""
        if data is None:  # e.g. an S3 location: show the reference
            return BlockView(kind="json", title=kind, json=pretty_json(body))
        return BlockView(kind=kind, title=title, fmt=fmt, byte_count=len(data), url=media_url(path, kind, fmt, data))
    if kind == "reasoningContent" and isinstance(body, Mapping):
        reasoning = body.get("reasoningText")
        if isinstance(reasoning, Mapping) and isinstance(reasoning.get("text"), str):
            return BlockView(kind="reasoning", html=markdown(reasoning["text"]))
        return BlockView(kind="json", title="reasoning (redacted)", json=pretty_json(body))
    if kind == "cachePoint":
        return BlockView(kind="marker", title="cache point")
    return BlockView(kind="json", title=str(kind), json=pretty_json(body))


def media_bytes(body: Mapping[str, Any]) -> bytes | None:
    """The ``source.bytes`` of an image, document or video block, if it holds bytes."""
    source = body.get("source")
    data = source.get("bytes") if isinstance(source, Mapping) else None
    return bytes(data) if isinstance(data, (bytes, bytearray, memoryview)) else None


def find_media(content: Any, path: Sequence[int]) -> tuple[str, Mapping[str, Any]] | None:
    """The ``(kind, body)`` of the medium at ``path`` in a message's content, or ``None``."""
    blocks = content
    for depth, index in enumerate(path):
        if not isinstance(blocks, Sequence) or isinstance(blocks, (str, bytes)) or not 0 <= index < len(blocks):
            return None
        block = blocks[index]
        if not isinstance(block, Mapping) or len(block) != 1:
            return None
        ((kind, body),) = block.items()
        if not isinstance(body, Mapping):
            return None
        if depth == len(path) - 1:
            return (kind, body) if kind in MEDIA_KINDS else None
        if kind != "toolResult":
            return None
        blocks = body.get("content")
    return None


def media_type(kind: str, fmt: str) -> str:
    """The Content-Type of a medium; ``application/octet-stream`` for formats not listed."""
    table = {"image": IMAGE_TYPES, "document": DOCUMENT_TYPES, "video": VIDEO_TYPES}.get(kind, {})
    return table.get(fmt.lower(), "application/octet-stream")


def data_uri(kind: str, fmt: str, data: bytes) -> str | None:
    """An inline ``data:`` URI for a small image of a known raster format, else ``None``."""
    mime = IMAGE_TYPES.get(fmt.lower())
    if kind != "image" or mime is None or len(data) > MAX_INLINE_IMAGE_BYTES:
        return None
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


# -- messages ------------------------------------------------------------------------------------


#: How a stored message was redacted (``SessionMessage.redact_message``).
#: ``in_place``: the record holds the redaction in both ``message`` and ``redact_message``, which is
#: what SDK 1.62 stores: the agent rewrites the message object in place before
#: ``redact_latest_message`` saves it, so the original content is not kept.
#: ``original_kept``: ``message`` differs from ``redact_message`` (another writer kept the original).
REDACTED_IN_PLACE = "in_place"
REDACTED_ORIGINAL_KEPT = "original_kept"


@dataclass
class MessageView:
    """One message of a timeline."""

    message_id: int | None
    role: str
    blocks: list[BlockView]
    created_at: str = ""
    #: The stored ``message`` when it differs from ``redact_message`` (which is what is shown).
    original: list[BlockView] | None = None
    #: ``""`` (not redacted), :data:`REDACTED_IN_PLACE` or :data:`REDACTED_ORIGINAL_KEPT`.
    redaction: str = ""
    usage: str = ""
    anchor: str = ""
    #: Why the stored record cannot be shown (a damaged record); then ``blocks`` is empty.
    error: str = ""
    #: Where the message is in its agent's timeline (a link from search results).
    url: str = ""


def message_view(
    message: Mapping[str, Any],
    media_url: Callable[[bool], MediaUrl],
    *,
    message_id: int | None = None,
    created_at: str = "",
    redact_message: Mapping[str, Any] | None = None,
    tool_names: Mapping[str, str] | None = None,
) -> MessageView:
    """A stored message as a timeline entry.

    ``media_url(redacted)`` gives the media URL builder for the original (``False``) or the
    redacted (``True``) content. A redacted message shows ``redact_message`` (what the SDK restores);
    the stored ``message`` is shown folded only when it differs.
    """
    shown = redact_message if redact_message is not None else message
    role = str(shown.get("role", "?"))
    blocks = block_views(shown.get("content", []), media_url(redact_message is not None), tool_names=tool_names)
    original = None
    redaction = ""
    if redact_message is not None:
        if message.get("content") == redact_message.get("content"):
            redaction = REDACTED_IN_PLACE
        else:
            redaction = REDACTED_ORIGINAL_KEPT
            original = block_views(message.get("content", []), media_url(False), tool_names=tool_names)
    counts = message_usage(message)
    usage = ""
    if counts is not None:
        usage = f"{counts.get('inputTokens', '?')} in / {counts.get('outputTokens', '?')} out tokens"
    return MessageView(
        message_id=message_id,
        role=role,
        blocks=blocks,
        created_at=created_at,
        original=original,
        redaction=redaction,
        usage=usage,
        anchor="" if message_id is None else f"m{message_id}",
    )


def damaged_message_view(message_id: int, error: str) -> MessageView:
    """A timeline entry for a record that cannot be read."""
    return MessageView(message_id=message_id, role="damaged", blocks=[], anchor=f"m{message_id}", error=error)


def message_usage(message: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The token usage the SDK stores on a model's reply (``metadata.usage``), if any."""
    metadata = message.get("metadata")
    usage = metadata.get("usage") if isinstance(metadata, Mapping) else None
    return usage if isinstance(usage, Mapping) else None


# -- search --------------------------------------------------------------------------------------


def message_text(message: Mapping[str, Any]) -> str:
    """The searchable text of a message: text, reasoning, tool names, inputs and results, file names."""
    parts: list[str] = []
    _collect_text(message.get("content"), parts, depth=0)
    return "\n".join(parts)


def _collect_text(content: Any, parts: list[str], depth: int) -> None:
    if not isinstance(content, Sequence) or isinstance(content, (str, bytes)) or depth > 2:
        return
    for block in content:
        if not isinstance(block, Mapping):
            continue
        for kind, body in block.items():
            if kind == "text" and isinstance(body, str):
                parts.append(body)
            elif kind == "toolUse" and isinstance(body, Mapping):
                parts.append(str(body.get("name", "")))
                parts.append(json.dumps(_jsonable(body.get("input")), ensure_ascii=False))
            elif kind == "toolResult" and isinstance(body, Mapping):
                _collect_text(body.get("content"), parts, depth + 1)
            elif kind == "json":
                parts.append(json.dumps(_jsonable(body), ensure_ascii=False))
            elif kind == "reasoningContent" and isinstance(body, Mapping):
                reasoning = body.get("reasoningText")
                if isinstance(reasoning, Mapping) and isinstance(reasoning.get("text"), str):
                    parts.append(reasoning["text"])
            elif kind in MEDIA_KINDS and isinstance(body, Mapping) and body.get("name"):
                parts.append(str(body["name"]))


def snippet(text: str, needle: str, width: int = 80) -> tuple[str, str, str]:
    """``(before, match, after)`` around the first case-insensitive match of ``needle`` in ``text``."""
    at = text.casefold().find(needle.casefold())
    if at < 0:
        return text[: 2 * width], "", ""
    end = at + len(needle)
    before = text[max(0, at - width) : at]
    after = text[end : end + width]
    return ("…" if at > width else "") + before, text[at:end], after + ("…" if end + width < len(text) else "")


# -- diffs ---------------------------------------------------------------------------------------


@dataclass
class DiffLine:
    """One line of a unified diff: ``kind`` is ``add``, ``del``, ``hunk`` or ``same``."""

    kind: str
    text: str


def json_diff(old: Any, new: Any, *, old_name: str = "before", new_name: str = "after") -> list[DiffLine]:
    """A unified diff of two values as indented, key-sorted JSON; empty when they are equal."""
    if old == new:
        return []
    before = json.dumps(_jsonable(old), indent=2, ensure_ascii=False, sort_keys=True).splitlines()
    after = json.dumps(_jsonable(new), indent=2, ensure_ascii=False, sort_keys=True).splitlines()
    lines: list[DiffLine] = []
    for line in difflib.unified_diff(before, after, old_name, new_name, n=2, lineterm=""):
        if line.startswith(("---", "+++")):
            continue
        kind = {"+": "add", "-": "del", "@": "hunk"}.get(line[:1], "same")
        lines.append(DiffLine(kind, line))
    return lines
