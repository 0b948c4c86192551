"""The ``svsm ui`` web viewer over HTTP (Starlette's TestClient) against a real Valkey 9.

Data is written by a real ``strands.Agent`` with ``ScriptedModel`` through ``ValkeySessionManager``
(see ``tests/ui_seed.py``): a tool call, images, a document, hostile text and hostile ids.
"""

from __future__ import annotations

import re
import socket
import threading
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from html.parser import HTMLParser
from http.client import HTTPConnection
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

import pytest
import valkey
from starlette.testclient import TestClient
from strands import Agent
from strands.types.session import Session, SessionAgent, SessionMessage, SessionType

from strands_valkey_session_manager import ValkeySessionManager, ValkeySessionRepository
from strands_valkey_session_manager._keys import encode_id, message_member
from strands_valkey_session_manager.cli.viewer import MAX_PAGE_SIZE, create_app
from strands_valkey_session_manager.cli.viewer import app as viewer_app
from strands_valkey_session_manager.cli.viewer.render import id_from_segment, id_segment
from strands_valkey_session_manager.scripted_model import ScriptedModel, Turn
from strands_valkey_session_manager.storage import ValkeyStorage
from strands_valkey_session_manager.transfer import parse_export
from tests import ui_seed
from tests.servers import free_port
from tests.ui_seed import (
    AGENT_ID,
    CHART_IMAGE,
    DOCUMENT_BYTES,
    GRAPH_ID,
    HOSTILE_SESSION,
    LONG_AGENT,
    LONG_COUNT,
    LONG_SESSION,
    PLAIN_SESSIONS,
    SNAPSHOT_SESSION,
    USER_IMAGE,
)

BASE = "http://127.0.0.1"


class _Page(HTMLParser):
    """Links, image sources, scripts and visible text of a page."""

    def __init__(self, html: str) -> None:
        super().__init__(convert_charrefs=True)
        self.links: list[str] = []
        self.images: list[str] = []
        self.scripts: list[dict[str, str | None]] = []
        self.script_bodies: list[str] = []
        self.event_handlers: list[str] = []
        self.text_parts: list[str] = []
        self._in_script = False
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        self.event_handlers.extend(name for name, _ in attrs if name.startswith("on"))
        if tag == "a" and values.get("href") is not None:
            self.links.append(values["href"] or "")
        if tag == "img":
            self.images.append(values.get("src") or "")
        if tag == "script":
            self.scripts.append(values)
            self._in_script = True

    def handle_endtag(self, tag: str) -> None:
        if tag == "script":
            self._in_script = False

    def handle_data(self, data: str) -> None:
        if self._in_script:
            self.script_bodies.append(data)
        else:
            self.text_parts.append(data)

    @property
    def text(self) -> str:
        return " ".join(" ".join(self.text_parts).split())


def session_path(session_id: str, suffix: str = "") -> str:
    return f"/sessions/{id_segment(session_id)}{suffix}"


@pytest.fixture
def seeded(standalone_client: valkey.Valkey) -> ValkeyStorage:
    storage = ValkeyStorage(standalone_client)
    ui_seed.seed(standalone_client, storage)
    return storage


@pytest.fixture
def repository(standalone_client: valkey.Valkey) -> ValkeySessionRepository:
    return ValkeySessionRepository(standalone_client)


@pytest.fixture
def http(repository: ValkeySessionRepository, seeded: ValkeyStorage) -> Iterator[TestClient]:
    with TestClient(create_app(repository, storage=seeded), base_url=BASE, follow_redirects=False) as client:
        yield client


def _rows(html: str) -> list[str]:
    """Session ids of the list rows (the catalog's table, not the snapshot-only list), in order."""
    page = _Page(html.split('<section class="snapshot-sessions">', maxsplit=1)[0])
    return [id_from_segment(link.split("/")[2]) for link in page.links if re.fullmatch(r"/sessions/[^/]+", link)]


# -- list ----------------------------------------------------------------------------------------


def test_list_shows_sessions_newest_first_with_counts_age_and_ttl(http: TestClient) -> None:
    response = http.get("/")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    # Newest first; the snapshot-only session is not in the catalog.
    assert _rows(response.text) == [*reversed(PLAIN_SESSIONS), LONG_SESSION, HOSTILE_SESSION]
    text = _Page(response.text).text
    assert "130" in text and "never" in text and re.search(r"just now|\ds ago", text)
    # Sessions with ttl=3600 show the time left; the others never expire.
    row = re.search(r"plain-05.*?</tr>", response.text, re.S)
    assert row is not None and re.search(r">(59m|1h)<", row.group(0))
    assert session_path(HOSTILE_SESSION) in _Page(response.text).links


def test_sessions_kept_only_as_snapshots_are_listed(http: TestClient, seeded: ValkeyStorage) -> None:
    section = http.get("/").text.split('<section class="snapshot-sessions">')[1]
    assert [id_from_segment(link.split("/")[2]) for link in _Page(section).links] == [SNAPSHOT_SESSION]
    # A session with both a store record and snapshots is listed once, in the catalog's table.
    ui_seed.seed_snapshots(seeded, session_id="plain-00")
    section = http.get("/").text.split('<section class="snapshot-sessions">')[1]
    assert [id_from_segment(link.split("/")[2]) for link in _Page(section).links] == [SNAPSHOT_SESSION]
    # The id prefix applies to them; user, tag and dates do not exist for them.
    assert "snapshot-sessions" not in http.get("/?user=carol").text
    assert SNAPSHOT_SESSION in http.get("/?prefix=snap").text
    assert '<li class="snapshot-session">' not in http.get("/?prefix=plain").text


def test_search_sessions_by_id_prefix_user_tag_and_date_range(http: TestClient) -> None:
    assert _rows(http.get("/?prefix=plain-0").text) == list(reversed(PLAIN_SESSIONS))
    assert _rows(http.get("/?prefix=plain-0&user=carol").text) == ["plain-05", "plain-03", "plain-01"]
    assert _rows(http.get("/?prefix=long&tag=bulk").text) == [LONG_SESSION]
    assert _rows(http.get("/", params={"prefix": "tenant/7 {"}).text) == [HOSTILE_SESSION]
    assert _rows(http.get("/?prefix=nothing").text) == []
    today = datetime.now(timezone.utc).date()
    everyone = [*reversed(PLAIN_SESSIONS), LONG_SESSION, HOSTILE_SESSION]
    for by in ("created", "updated"):
        assert _rows(http.get("/", params={"by": by, "from": str(today), "to": str(today)}).text) == everyone
        assert _rows(http.get("/", params={"by": by, "to": str(today - timedelta(days=1))}).text) == []
        assert _rows(http.get("/", params={"by": by, "from": str(today + timedelta(days=1))}).text) == []
    assert _rows(http.get("/", params={"from": str(today), "user": "bob"}).text) == [LONG_SESSION]
    bad = http.get("/?from=yesterday")
    assert bad.status_code == 400 and "YYYY-MM-DD" in bad.text


def test_a_filtered_list_pages_from_where_it_stopped(http: TestClient) -> None:
    seen: list[str] = []
    response = http.get("/?prefix=plain&limit=2")
    for _ in range(5):
        seen += _rows(response.text)
        more = re.search(r'hx-get="([^"]+)"', response.text)
        if more is None:
            break
        url = more.group(1).replace("&amp;", "&")
        assert "prefix=plain" in url and "limit=2" in url
        response = http.get(url, headers={"HX-Request": "true"})
    assert seen == list(reversed(PLAIN_SESSIONS))


def test_a_filtered_list_reads_a_bounded_number_of_sessions(
    repository: ValkeySessionRepository, seeded: ValkeyStorage, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(viewer_app, "MAX_SCAN_SESSIONS", 3)
    monkeypatch.setattr(viewer_app, "SCAN_SESSIONS_PAGE", 3)
    with TestClient(create_app(repository, storage=seeded), base_url=BASE) as client:
        first = client.get("/?prefix=tenant&limit=1")
        assert _rows(first.text) == []  # the three newest sessions do not match
        assert "this page read 3 sessions" in _Page(first.text).text
        more = re.search(r'hx-get="([^"]+)"', first.text)
        assert more is not None
        seen: list[str] = []
        url: str | None = more.group(1).replace("&amp;", "&")
        while url is not None:
            response = client.get(url)
            seen += _rows(response.text)
            found = re.search(r'hx-get="(/\?[^"]+)"', response.text)
            url = found.group(1).replace("&amp;", "&") if found else None
        assert seen == [HOSTILE_SESSION]


def test_list_pages_with_the_catalog_cursor(http: TestClient) -> None:
    seen: list[str] = []
    response = http.get("/?limit=3")
    seen += _rows(response.text)
    assert len(seen) == 3
    for _ in range(5):
        more = re.search(r'hx-get="([^"]+)"', response.text)
        if more is None:
            break
        url = more.group(1).replace("&amp;", "&")
        assert "cursor=" in url and "limit=3" in url
        # htmx asks for the rows only; the plain link gives a whole page.
        response = http.get(url, headers={"HX-Request": "true"})
        assert "<html" not in response.text and "<tr" in response.text
        seen += _rows(response.text)
        assert "<html" in http.get(url).text
    assert seen == [*reversed(PLAIN_SESSIONS), LONG_SESSION, HOSTILE_SESSION]


def test_list_filters_by_user_and_tag(http: TestClient) -> None:
    assert _rows(http.get("/?user=carol").text) == ["plain-05", "plain-03", "plain-01"]
    assert _rows(http.get("/?tag=support").text) == [HOSTILE_SESSION]
    assert _rows(http.get("/?user=bob&tag=bulk").text) == [LONG_SESSION]
    assert _rows(http.get("/?user=bob&tag=plain").text) == []
    empty = http.get("/?user=nobody")
    assert empty.status_code == 200 and "No sessions match this filter" in empty.text


def test_search_by_exact_id_opens_the_session_or_says_it_is_missing(http: TestClient) -> None:
    found = http.get("/", params={"id": HOSTILE_SESSION})
    assert found.status_code == 303
    assert found.headers["location"] == session_path(HOSTILE_SESSION)
    assert http.get("/", params={"id": SNAPSHOT_SESSION}).status_code == 303  # snapshots only

    missing = http.get("/", params={"id": "<script>alert(1)</script>"})
    assert missing.status_code == 404
    assert "No session with id" in missing.text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in missing.text
    assert "<script>alert" not in missing.text


def test_page_sizes_are_bounded(repository: ValkeySessionRepository, http: TestClient) -> None:
    for bad in (0, MAX_PAGE_SIZE + 1, -1):
        with pytest.raises(ValueError, match="page_size"):
            create_app(repository, page_size=bad)
    # A request cannot ask for more than MAX_PAGE_SIZE messages or fewer than one.
    page = http.get(session_path(LONG_SESSION, f"/agents/{LONG_AGENT}?limit=100000"))
    assert page.text.count('class="message ') == LONG_COUNT
    assert http.get(session_path(LONG_SESSION, f"/agents/{LONG_AGENT}?limit=0")).text.count('class="message ') == 1
    assert http.get("/?limit=nonsense").status_code == 200


# -- session page --------------------------------------------------------------------------------


def test_hostile_text_is_shown_as_text(http: TestClient) -> None:
    response = http.get(session_path(HOSTILE_SESSION))
    assert response.status_code == 200
    page = _Page(response.text)
    # The only script is the vendored htmx, from this origin; no inline script, no event handlers.
    assert page.scripts == [{"src": "/static/htmx.min.js", "defer": None}]
    assert page.script_bodies == []
    assert page.event_handlers == []
    assert "<script>alert(1)</script>" in page.text
    assert "<img src=x onerror=alert(1)>" in page.text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in response.text
    assert "<img src=x" not in response.text
    assert not any(link.startswith("javascript:") for link in page.links)
    assert "<strong>Done</strong>" in response.text  # Markdown still renders
    assert "&lt;b&gt;teal&lt;/b&gt;" in response.text  # agent state, as JSON text
    csp = response.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "img-src 'self' data:" in csp and "default-src 'none'" in csp
    assert response.headers["x-content-type-options"] == "nosniff"


def test_session_page_shows_agents_tool_calls_media_state_and_orchestrators(http: TestClient) -> None:
    response = http.get(session_path(HOSTILE_SESSION))
    html = response.text
    page = _Page(html)
    assert HOSTILE_SESSION in page.text
    assert AGENT_ID in page.text and "6 messages" in page.text
    assert "alice" in page.text and "support" in page.text
    # Tool call and result are collapsible, with the input as JSON.
    tool_use = re.search(r'<details class="tool-use">.*?</details>', html, re.S)
    assert tool_use is not None and "chart" in tool_use.group(0) and "&#34;title&#34;" in tool_use.group(0)
    assert '<details class="tool-result">' in html and "success" in html
    # The user's image and the tool's image, from the block endpoint.
    agent = id_segment(AGENT_ID)
    assert page.images == [
        session_path(HOSTILE_SESSION, f"/agents/{agent}/messages/0/blocks/1"),
        session_path(HOSTILE_SESSION, f"/agents/{agent}/messages/2/blocks/0/1"),
    ]
    document = session_path(HOSTILE_SESSION, f"/agents/{agent}/messages/4/blocks/1")
    assert document in page.links
    assert "report &lt;q3&gt;.pdf" in html
    assert "Agent state" in page.text and "Conversation manager state" in page.text
    assert "SlidingWindowConversationManager" in html
    assert GRAPH_ID in page.text and "graph" in page.text and "completed" in page.text
    assert session_path(HOSTILE_SESSION, "/export") in page.links
    assert "Delete" not in page.text  # read-only app


def test_media_endpoint_serves_the_stored_bytes(http: TestClient) -> None:
    agent = id_segment(AGENT_ID)
    for url, expected in (
        (f"/agents/{agent}/messages/0/blocks/1", USER_IMAGE),
        (f"/agents/{agent}/messages/2/blocks/0/1", CHART_IMAGE),
    ):
        response = http.get(session_path(HOSTILE_SESSION, url))
        assert response.status_code == 200
        assert response.content == expected
        assert response.headers["content-type"] == "image/png"
        assert response.headers["x-content-type-options"] == "nosniff"
        assert "sandbox" in response.headers["content-security-policy"]
        assert "content-disposition" not in response.headers

    document = http.get(session_path(HOSTILE_SESSION, f"/agents/{agent}/messages/4/blocks/1"))
    assert document.status_code == 200
    assert document.content == DOCUMENT_BYTES
    assert document.headers["content-type"] == "application/pdf"
    disposition = document.headers["content-disposition"]
    assert disposition.startswith("attachment;") and "report _q3_.pdf" in disposition

    for bad in (
        "/messages/0/blocks/0",  # a text block
        "/messages/0/blocks/9",  # no such block
        "/messages/1/blocks/0/0",  # toolUse has no nested content
        "/messages/99/blocks/0",  # no such message
        "/messages/x/blocks/0",
        "/messages/0/blocks/-1",
    ):
        assert http.get(session_path(HOSTILE_SESSION, f"/agents/{agent}{bad}")).status_code == 404, bad


def test_timeline_pages_through_a_long_conversation(http: TestClient) -> None:
    def ids(html: str) -> list[int]:
        return [int(m) for m in re.findall(r'id="m(\d+)"', html)]

    first = http.get(session_path(LONG_SESSION))
    assert ids(first.text) == list(range(50))
    assert "Messages 1\u201350 of 130" in _Page(first.text).text
    more = re.search(r'hx-get="([^"]+/agents/[^"]+)"', first.text)
    assert more is not None
    url = more.group(1).replace("&amp;", "&")
    assert parse_qs(urlsplit(url).query) == {"offset": ["50"], "limit": ["50"]}

    second = http.get(url, headers={"HX-Request": "true"})
    assert "<html" not in second.text
    assert ids(second.text) == list(range(50, 100))
    nxt = re.search(r'hx-get="([^"]+)"', second.text)
    assert nxt is not None and "offset=100" in nxt.group(1)
    third = http.get(nxt.group(1).replace("&amp;", "&"), headers={"HX-Request": "true"})
    assert ids(third.text) == list(range(100, 130))
    assert "hx-get" not in third.text  # the end

    # Without htmx, the same link is a full page with first/previous links.
    full = http.get(session_path(LONG_SESSION, f"/agents/{LONG_AGENT}?offset=120&limit=5"))
    assert full.status_code == 200 and "<html" in full.text
    assert ids(full.text) == list(range(120, 125))
    assert "Messages 121\u2013125 of 130" in _Page(full.text).text
    assert "previous" in full.text and "first" in full.text
    beyond = _Page(http.get(session_path(LONG_SESSION, f"/agents/{LONG_AGENT}?offset=500")).text).text
    assert "No messages from 501 on; there are 130." in beyond and "previous" in beyond


def test_a_guardrail_redaction_is_labelled_as_sdk_1_62_stores_it(
    standalone_client: valkey.Valkey, repository: ValkeySessionRepository
) -> None:
    manager = ValkeySessionManager(session_id="guarded", client=standalone_client)
    model = ScriptedModel([Turn(text="I cannot help with that.", redact_user="[user input redacted]")])
    Agent(model=model, session_manager=manager, agent_id="a", callback_handler=None)("a forbidden <b>request</b>")
    # What the SDK stores: the agent rewrites the message in place before redact_latest_message
    # saves it, so the record holds the redaction twice and the original is gone.
    stored = repository.read_message("guarded", "a", 0)
    assert stored is not None and stored.redact_message is not None
    assert stored.message["content"] == stored.redact_message["content"] == [{"text": "[user input redacted]"}]
    with TestClient(create_app(repository), base_url=BASE) as client:
        html = client.get("/sessions/guarded").text
    assert "[user input redacted]" in html
    assert '<span class="badge">redacted</span>' in html
    assert "The original content was not stored" in html
    assert "before redaction" not in html and '<details class="original">' not in html
    assert "forbidden" not in html


def test_a_record_that_kept_its_original_shows_it_folded(
    standalone_client: valkey.Valkey, repository: ValkeySessionRepository
) -> None:
    manager = ValkeySessionManager(session_id="kept", client=standalone_client)
    Agent(model=ScriptedModel(["ok"]), session_manager=manager, agent_id="a", callback_handler=None)("hello")
    # Another writer may keep the original in ``message`` and the replacement in ``redact_message``.
    redacted = SessionMessage(
        message={"role": "user", "content": [{"text": "a forbidden <b>request</b>"}]},
        message_id=0,
        redact_message={"role": "user", "content": [{"text": "[user input redacted]"}]},
    )
    repository.update_message("kept", "a", redacted)
    with TestClient(create_app(repository), base_url=BASE) as client:
        html = client.get("/sessions/kept").text
    assert "[user input redacted]" in html
    original = re.search(r'<details class="original">.*?</details>', html, re.S)
    assert original is not None and "a forbidden &lt;b&gt;request&lt;/b&gt;" in original.group(0)
    assert "differs from the redaction; the agent restores the redaction" in original.group(0)
    assert "The original content was not stored" not in html


def test_tool_results_show_their_tool_name_also_across_a_page_boundary(http: TestClient) -> None:
    def result_names(html: str) -> list[str]:
        return re.findall(r'<summary>Tool result <code class="tool-name">([^<]*)</code>', html)

    assert result_names(http.get(session_path(HOSTILE_SESSION)).text) == ["chart"]
    # Message 1 asks for the tool, message 2 holds its result: a page starting at 2 still names it.
    page = http.get(session_path(HOSTILE_SESSION, f"/agents/{id_segment(AGENT_ID)}?offset=2&limit=1"))
    assert 'id="m1"' not in page.text and 'id="m2"' in page.text
    assert result_names(page.text) == ["chart"]
    more = http.get(
        session_path(HOSTILE_SESSION, f"/agents/{id_segment(AGENT_ID)}?offset=2&limit=1"),
        headers={"HX-Request": "true"},
    )
    assert result_names(more.text) == ["chart"]


def test_one_damaged_record_is_an_inline_error_and_the_rest_of_the_page_stays(
    http: TestClient, standalone_client: valkey.Valkey, repository: ValkeySessionRepository
) -> None:
    keys = repository.session_keys(HOSTILE_SESSION)
    member = message_member(encode_id(AGENT_ID, "agent_id"), 2)
    assert standalone_client.hexists(keys.messages, member)
    standalone_client.hset(keys.messages, member, b"{not json")  # message 2 (the tool result)
    standalone_client.hset(keys.multi, GRAPH_ID, b"[1, 2")
    response = http.get(session_path(HOSTILE_SESSION))
    assert response.status_code == 200
    html = response.text
    # Every other message is there, in order, with message 2 as an error in its place.
    assert re.findall(r'id="m(\d+)"', html) == ["0", "1", "2", "3", "4", "5"]
    damaged = re.search(r'<li class="message damaged" id="m2">.*?</li>', html, re.S)
    assert damaged is not None and "This message cannot be shown" in damaged.group(0)
    assert "Please draw &lt;script&gt;" in html and "<strong>Done</strong>" in html
    assert "Thanks, I read the document." in html
    # The orchestrator's state is an error too; the agent's state and the page's links remain.
    assert "This state cannot be shown" in html and GRAPH_ID in html
    assert "Agent state" in html and session_path(HOSTILE_SESSION, "/export") in _Page(html).links
    # The agent page and text search read around it the same way.
    agent_page = http.get(session_path(HOSTILE_SESSION, f"/agents/{id_segment(AGENT_ID)}"))
    assert agent_page.status_code == 200 and '<li class="message damaged" id="m2">' in agent_page.text
    found = http.get(session_path(HOSTILE_SESSION, "/search"), params={"q": "document"})
    assert found.status_code == 200 and "1 match" in _Page(found.text).text and "message 2" in found.text


def test_a_damaged_agent_record_keeps_its_timeline(
    http: TestClient, standalone_client: valkey.Valkey, repository: ValkeySessionRepository
) -> None:
    keys = repository.session_keys(LONG_SESSION)
    standalone_client.hset(keys.agents, LONG_AGENT, b"5")
    standalone_client.hset(keys.session, "record", b"{torn")
    response = http.get(session_path(LONG_SESSION))
    assert response.status_code == 200
    html = response.text
    assert "The agent record cannot be shown" in html
    assert "Session record:" in html and "bob" in html  # the catalog view still shows
    assert re.findall(r'id="m(\d+)"', html) == [str(n) for n in range(50)]


def test_an_agent_without_messages_and_an_empty_session(repository: ValkeySessionRepository) -> None:
    repository.create_session(Session(session_id="quiet", session_type=SessionType.AGENT))
    repository.create_session(Session(session_id="empty", session_type=SessionType.AGENT))
    repository.create_agent("quiet", SessionAgent(agent_id="mute", state={"k": 1}, conversation_manager_state={}))
    with TestClient(create_app(repository), base_url=BASE) as client:
        quiet = _Page(client.get("/sessions/quiet").text).text
        assert "mute" in quiet and "No messages." in quiet and "0 messages" in quiet
        assert "This session has no agents yet." in _Page(client.get("/sessions/empty").text).text
        assert client.get("/sessions/quiet/agents/mute?offset=5").status_code == 200


def test_export_is_the_session_as_jsonl(http: TestClient, repository: ValkeySessionRepository) -> None:
    response = http.get(session_path(HOSTILE_SESSION, "/export"))
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/x-ndjson")
    assert response.headers["content-disposition"].startswith("attachment;")
    assert response.text == repository.export_session(HOSTILE_SESSION)
    export = parse_export(response.text)
    assert export.session.session_id == HOSTILE_SESSION
    assert export.message_count == 6
    assert set(export.multi_agents) == {GRAPH_ID}
    assert http.get(session_path("no such session", "/export")).status_code == 404


# -- ids -----------------------------------------------------------------------------------------

AWKWARD_IDS = ["a/b", "a//b/", "{x}", "?q=1&r=2", "#frag", "sp ace", "ü🚀", ".", "..", "~tilde", "%2F", "100%", "a+b"]


@pytest.mark.parametrize("awkward", AWKWARD_IDS)
def test_any_id_is_one_url_segment_that_round_trips(
    awkward: str, standalone_client: valkey.Valkey, repository: ValkeySessionRepository
) -> None:
    repository.create_session(Session(session_id=awkward, session_type=SessionType.AGENT))
    repository.create_agent(awkward, SessionAgent(agent_id=awkward, state={}, conversation_manager_state={}))
    image = {"image": {"format": "png", "source": {"bytes": USER_IMAGE}}}
    message = SessionMessage(message={"role": "user", "content": [{"text": awkward}, image]}, message_id=0)
    repository.create_message(awkward, awkward, message)
    with TestClient(create_app(repository), base_url=BASE, follow_redirects=False) as client:
        listed = _Page(client.get("/").text).links
        link = session_path(awkward)
        assert link in listed
        assert link.count("/") == 2 and "?" not in link and "#" not in link
        assert urlsplit(BASE + link).path == link  # no dot segment for a browser to resolve
        session = client.get(link)
        assert session.status_code == 200
        assert f"<code>{_escaped(awkward)}</code>" in session.text
        page = _Page(session.text)
        agent_link = session_path(awkward, f"/agents/{id_segment(awkward)}")
        assert agent_link in page.links
        assert client.get(agent_link).status_code == 200
        assert len(page.images) == 1 and client.get(page.images[0]).content == USER_IMAGE
        assert client.get(session_path(awkward, "/export")).status_code == 200
        assert client.get("/", params={"id": awkward}).headers["location"] == link
        # Search, tokens and the live fragment take the same segments.
        assert _rows(client.get("/", params={"prefix": awkward}).text) == [awkward]
        found = client.get(session_path(awkward, "/search"), params={"q": awkward})
        assert found.status_code == 200 and "1 match" in _Page(found.text).text
        hit = re.search(r'<a href="([^"]+)">open in the timeline</a>', found.text)
        assert hit is not None and client.get(hit.group(1).replace("&amp;", "&").split("#")[0]).status_code == 200
        usage = client.get(session_path(awkward, "/usage"), headers={"HX-Request": "true"})
        assert usage.status_code == 200 and f"<code>{_escaped(awkward)}</code>" in usage.text
        live = session.text if 'class="live"' in session.text else client.get(link + "?live=1").text
        poller = re.search(r'<li class="live" hx-get="([^"]+)"', live)
        assert poller is not None
        assert client.get(poller.group(1).replace("&amp;", "&"), headers={"HX-Request": "true"}).status_code == 204


def _escaped(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&#34;")


def test_ids_decode_percent_escapes_once(repository: ValkeySessionRepository) -> None:
    for session_id in ("a", "%61"):
        repository.create_session(Session(session_id=session_id, session_type=SessionType.AGENT))
    with TestClient(create_app(repository), base_url=BASE) as client:
        assert "<code>%61</code>" in client.get("/sessions/%2561").text
        assert "<code>a</code>" in client.get("/sessions/%61").text
        assert client.get("/sessions/%FF").status_code == 404  # not UTF-8
        assert client.get("/sessions/" + quote("no such")).status_code == 404


# -- safety --------------------------------------------------------------------------------------


def test_read_only_by_default(http: TestClient) -> None:
    target = session_path(HOSTILE_SESSION)
    assert http.get(target + "/delete").status_code == 404
    assert http.post(target + "/delete", data={"confirm": "yes"}).status_code == 404
    for method in ("POST", "PUT", "PATCH", "DELETE"):
        assert http.request(method, target).status_code == 405
        assert http.request(method, "/").status_code == 405
        assert http.request(method, target + "/export").status_code == 405
    assert http.get(target).status_code == 200


def test_delete_takes_a_confirmation_form(repository: ValkeySessionRepository, seeded: ValkeyStorage) -> None:
    target = session_path(HOSTILE_SESSION)
    with TestClient(create_app(repository, allow_delete=True), base_url=BASE, follow_redirects=False) as client:
        assert f'href="{target}/delete"' in client.get(target).text
        form = client.get(target + "/delete")
        assert form.status_code == 200
        token = re.search(r'name="token" value="([0-9a-f]+)"', form.text)
        assert token is not None
        assert f'action="{target}/delete"' in form.text

        assert client.post(target + "/delete", data={"confirm": "yes"}).status_code == 403  # no token
        wrong = session_path(LONG_SESSION, "/delete")  # another session's token does not fit
        assert client.post(wrong, data={"token": token.group(1), "confirm": "yes"}).status_code == 403
        assert client.post(target + "/delete", data={"token": token.group(1)}).status_code == 400  # not ticked
        cross = client.post(
            target + "/delete",
            data={"token": token.group(1), "confirm": "yes"},
            headers={"Origin": "http://evil.example"},
        )
        assert cross.status_code == 403
        assert repository.read_session(HOSTILE_SESSION) is not None

        done = client.post(
            target + "/delete", data={"token": token.group(1), "confirm": "yes"}, headers={"Origin": BASE}
        )
        assert done.status_code == 303
        assert repository.read_session(HOSTILE_SESSION) is None
        assert repository.read_session(LONG_SESSION) is not None
        listing = client.get(done.headers["location"])
        assert "Deleted session" in listing.text and HOSTILE_SESSION not in _rows(listing.text)
        assert client.get(target).status_code == 404
        assert client.get(target + "/delete").status_code == 404
        # The form sent again (a second tab): the session is gone, a 404 page (SessionNotFoundError).
        again = client.post(
            target + "/delete", data={"token": token.group(1), "confirm": "yes"}, headers={"Origin": BASE}
        )
        assert again.status_code == 404 and "does not exist" in again.text


def test_only_loopback_host_headers_are_served(repository: ValkeySessionRepository) -> None:
    app = create_app(repository)
    for base in ("http://127.0.0.1:8765", "http://localhost:8765", "http://[::1]:8765"):
        with TestClient(app, base_url=base) as client:
            assert client.get("/").status_code == 200, base
    with TestClient(app, base_url="http://attacker.example") as client:
        assert client.get("/").status_code == 400  # DNS rebinding
    with TestClient(create_app(repository, allowed_hosts=["viewer.internal"]), base_url="http://viewer.internal") as c:
        assert c.get("/").status_code == 200


def test_static_assets_are_served_locally(http: TestClient) -> None:
    script = http.get("/static/htmx.min.js")
    assert script.status_code == 200 and "htmx" in script.text[:200]
    assert http.get("/static/ui.css").status_code == 200
    assert http.get("/static/../app.py").status_code == 404
    html = http.get("/").text
    assert "http://" not in html and "https://" not in html  # nothing from the internet


def test_unknown_things_are_404_pages(http: TestClient) -> None:
    for url in (
        "/sessions/nope",
        session_path(HOSTILE_SESSION, "/agents/nope"),
        session_path(HOSTILE_SESSION, "/snapshot?key=scopes/agent/x/snapshots/snapshot_latest.json"),
        "/nope",
    ):
        response = http.get(url)
        assert response.status_code == 404, url
        assert "<html" in response.text


def test_an_unreachable_server_is_a_503_page() -> None:
    dead: Any = valkey.Valkey("127.0.0.1", free_port(), socket_connect_timeout=0.5)
    with TestClient(create_app(ValkeySessionRepository(dead)), base_url=BASE) as client:
        response = client.get("/")
    assert response.status_code == 503
    assert "unavailable" in response.text


def test_an_orchestrator_hash_of_the_wrong_type_is_an_inline_error(
    http: TestClient, standalone_client: valkey.Valkey, repository: ValkeySessionRepository
) -> None:
    multi = repository.session_keys(HOSTILE_SESSION).multi
    standalone_client.delete(multi)
    standalone_client.set(multi, "not a hash")
    response = http.get(session_path(HOSTILE_SESSION))
    assert response.status_code == 200
    assert "Orchestrators: " in response.text and "WRONGTYPE" in response.text
    assert re.findall(r'id="m(\d+)"', response.text) == ["0", "1", "2", "3", "4", "5"]


def test_failures_of_raw_reads_are_503_pages_too(
    valkey9_server: Any, seeded: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    def lost(name: Any) -> Any:
        raise valkey.exceptions.ConnectionError("connection lost")

    flaky: Any = valkey.Valkey(valkey9_server.host, valkey9_server.port, decode_responses=True)
    monkeypatch.setattr(flaky, "hkeys", lost)
    dead: Any = valkey.Valkey("127.0.0.1", free_port(), socket_connect_timeout=0.5)
    try:
        with TestClient(create_app(ValkeySessionRepository(flaky)), base_url=BASE) as client:
            response = client.get(session_path(HOSTILE_SESSION))
            # Mapped by the repository's rule (by exception class), naming the step.
            assert response.status_code == 503 and "orchestrator_ids" in response.text
        app = create_app(ValkeySessionRepository(flaky), storage=ValkeyStorage(dead))
        with TestClient(app, base_url=BASE) as client:
            assert client.get(session_path(LONG_SESSION)).status_code == 503  # snapshot listing
    finally:
        flaky.close()


# -- snapshots -----------------------------------------------------------------------------------


def test_snapshot_history_is_listed_and_readable(http: TestClient) -> None:
    page = http.get(session_path(SNAPSHOT_SESSION))
    assert page.status_code == 200
    assert "only snapshots" in page.text
    links = [link for link in _Page(page.text).links if "/snapshot?" in link]
    assert len(links) == 3  # latest + two immutable snapshots
    keys = [parse_qs(urlsplit(link).query)["key"][0] for link in links]
    assert keys[0] == f"scopes/agent/{ui_seed.SNAPSHOT_AGENT}/snapshots/snapshot_latest.json"
    assert all(k.startswith(f"scopes/agent/{ui_seed.SNAPSHOT_AGENT}/snapshots/immutable_history/") for k in keys[1:])
    assert keys[1] > keys[2]  # newest first

    latest = http.get(links[0].replace("&amp;", "&"))
    assert latest.status_code == 200
    view = _Page(latest.text)
    assert "second question" in view.text
    assert "second answer <script>alert(1)</script>" in view.text
    assert view.script_bodies == []
    assert len(view.images) == 1 and view.images[0].startswith("data:image/png;base64,")
    oldest = http.get(links[2].replace("&amp;", "&"))
    assert "first answer" in oldest.text and "second question" not in oldest.text

    for bad in ("../../../etc", "scopes/agent/x/../../snapshot_latest.json", "memory/notes.json", ""):
        assert http.get(session_path(SNAPSHOT_SESSION, "/snapshot"), params={"key": bad}).status_code == 404


def test_without_storage_there_is_no_snapshot_section(repository: ValkeySessionRepository, seeded: Any) -> None:
    with TestClient(create_app(repository), base_url=BASE) as client:
        assert client.get(session_path(SNAPSHOT_SESSION)).status_code == 404
        assert "Snapshots" not in client.get(session_path(HOSTILE_SESSION)).text


# -- serve ---------------------------------------------------------------------------------------


def test_serve_binds_loopback_and_builds_the_app(
    monkeypatch: pytest.MonkeyPatch, valkey9_server: Any, seeded: Any
) -> None:
    import uvicorn

    from strands_valkey_session_manager.cli.viewer import serve

    calls: list[dict[str, Any]] = []

    def fake_run(app: Any, **kwargs: Any) -> None:
        with TestClient(app, base_url=f"http://127.0.0.1:{kwargs['port']}") as client:
            kwargs["list"] = client.get("/").text
            kwargs["snapshots"] = client.get(session_path(SNAPSHOT_SESSION)).status_code
            kwargs["delete"] = client.get(session_path(LONG_SESSION, "/delete")).status_code
        calls.append(kwargs)

    monkeypatch.setattr(uvicorn, "run", fake_run)
    serve(valkey9_server.url, cluster=False, prefix="strands", host="127.0.0.1", port=8765, allow_delete=False)
    (call,) = calls
    assert call["host"] == "127.0.0.1" and call["port"] == 8765
    assert LONG_SESSION in call["list"]
    assert call["snapshots"] == 200
    assert call["delete"] == 404


def test_serve_refuses_an_unreachable_server_before_listening(monkeypatch: pytest.MonkeyPatch) -> None:
    import uvicorn

    from strands_valkey_session_manager import SessionStoreUnavailableError
    from strands_valkey_session_manager.cli.viewer import serve

    monkeypatch.setattr(uvicorn, "run", lambda *args, **kwargs: pytest.fail("started without a server"))
    url = f"redis://user:secret@127.0.0.1:{free_port()}"
    with pytest.raises(SessionStoreUnavailableError) as raised:
        serve(url, cluster=False, prefix="strands", host="127.0.0.1", port=8765, allow_delete=False, timeout=0.5)
    assert "secret" not in str(raised.value)


def test_allowed_hosts_follow_the_bind_address() -> None:
    from strands_valkey_session_manager.cli.viewer.server import allowed_hosts_for

    loopback = ["127.0.0.1", "localhost", "::1", "[::1]"]
    assert allowed_hosts_for("127.0.0.1") == loopback
    assert allowed_hosts_for("192.0.2.7") == [*loopback, "192.0.2.7"]
    assert allowed_hosts_for("2001:db8::7") == [*loopback, "[2001:db8::7]"]
    for wildcard in ("0.0.0.0", "::", ""):
        assert allowed_hosts_for(wildcard) == loopback  # every interface, still only loopback names
    given = ["My.Box", "*.corp.example", "10.0.0.1", "::1", "fe80::1", "my.box"]
    assert allowed_hosts_for("0.0.0.0", given) == [*loopback, "my.box", "*.corp.example", "10.0.0.1", "[fe80::1]"]


@pytest.mark.parametrize("name", ["*", "my.box:8765", "http://my.box", "a b", "", "*.", "[::1"])
def test_allowed_hosts_are_names_or_addresses(name: str) -> None:
    from strands_valkey_session_manager.cli.viewer.server import allowed_hosts_for

    with pytest.raises(ValueError, match="cannot be turned off"):
        allowed_hosts_for("0.0.0.0", [name])


def _request(port: int, host_header: str, method: str = "GET", path: str = "/", body: str | None = None) -> int:
    """Status of one request to the server on 127.0.0.1:``port`` that names ``host_header`` as its host."""
    connection = HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.putrequest(method, path, skip_host=True)
        connection.putheader("Host", host_header)
        if body is not None:
            connection.putheader("Content-Type", "application/x-www-form-urlencoded")
            connection.putheader("Content-Length", str(len(body)))
        connection.endheaders(body.encode() if body is not None else None)
        return connection.getresponse().status
    finally:
        connection.close()


@pytest.fixture
def real_uvicorn(monkeypatch: pytest.MonkeyPatch) -> list[Callable[[int], None]]:
    """``uvicorn.run`` replaced by a real uvicorn server on the host and port ``serve`` asks for, in a
    thread, that runs the checks appended to the returned list and stops."""
    import uvicorn

    checks: list[Callable[[int], None]] = []

    def run(app: Any, *, host: str, port: int, **kwargs: Any) -> None:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((host, port))  # listening before the thread starts: no wait for a start-up
        listener.listen()
        server = uvicorn.Server(uvicorn.Config(app, log_level="warning", server_header=False, lifespan="off"))
        thread = threading.Thread(target=server.run, kwargs={"sockets": [listener]})
        thread.start()
        try:
            for check in checks:
                check(port)
        finally:
            server.should_exit = True
            thread.join(timeout=30)
            listener.close()
        assert not thread.is_alive()

    monkeypatch.setattr(uvicorn, "run", run)
    return checks


def test_binding_every_interface_keeps_the_host_check(
    valkey9_server: Any, seeded: Any, repository: ValkeySessionRepository, real_uvicorn: list[Callable[[int], None]]
) -> None:
    """``svsm ui --host 0.0.0.0``: a DNS-rebinding page (``Host: evil.example``) reads and deletes nothing."""
    from typer.testing import CliRunner

    from strands_valkey_session_manager.cli.command import app

    target = session_path(LONG_SESSION)
    statuses: dict[str, int] = {}

    def check(port: int) -> None:
        for name in ("evil.example", f"evil.example:{port}", "my.box", "0.0.0.0"):
            statuses[name] = _request(port, name)
        statuses["evil delete"] = _request(port, "evil.example", "POST", target + "/delete", "confirm=on&token=x")
        for name in (f"127.0.0.1:{port}", f"localhost:{port}", f"[::1]:{port}"):
            statuses[name] = _request(port, name)

    real_uvicorn.append(check)
    port = free_port()
    argv = ["--url", valkey9_server.url, "ui", "--host", "0.0.0.0", "--port", str(port), "--allow-delete"]
    result = CliRunner().invoke(app, argv)
    assert result.exit_code == 0, result.output
    refused = {name: statuses[name] for name in ("evil.example", f"evil.example:{port}", "my.box", "0.0.0.0")}
    assert set(refused.values()) == {400}, refused
    assert statuses["evil delete"] == 400
    assert all(statuses[name] == 200 for name in (f"127.0.0.1:{port}", f"localhost:{port}", f"[::1]:{port}"))
    assert repository.read_session(LONG_SESSION) is not None


def test_allowed_host_names_are_answered_on_every_interface(
    valkey9_server: Any, seeded: Any, real_uvicorn: list[Callable[[int], None]]
) -> None:
    from typer.testing import CliRunner

    from strands_valkey_session_manager.cli.command import app

    statuses: dict[str, int] = {}

    def check(port: int) -> None:
        for name in ("my.box", f"My.Box:{port}", "viewer.corp.example", "10.0.0.1", "evil.example", "box"):
            statuses[name] = _request(port, name)

    real_uvicorn.append(check)
    argv = ["--url", valkey9_server.url, "ui", "--host", "0.0.0.0", "--port", str(free_port())]
    argv += ["--allowed-host", "my.box", "--allowed-host", "*.corp.example", "--allowed-host", "10.0.0.1"]
    result = CliRunner().invoke(app, argv)
    assert result.exit_code == 0, result.output
    assert [statuses[n] for n in ("my.box", "viewer.corp.example", "10.0.0.1")] == [200, 200, 200]
    assert [statuses[n] for n in ("evil.example", "box")] == [400, 400]
    assert any(name.lower().startswith("my.box:") and status == 200 for name, status in statuses.items())


def test_svsm_ui_refuses_a_wildcard_allowed_host(monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    import strands_valkey_session_manager.cli.viewer
    from strands_valkey_session_manager.cli.command import app

    monkeypatch.setattr(strands_valkey_session_manager.cli.viewer, "serve", lambda url, **kw: pytest.fail("served"))
    for name in ("*", "my.box:8765"):
        result = CliRunner().invoke(app, ["--url", "redis://h:1", "ui", "--host", "0.0.0.0", "--allowed-host", name])
        assert result.exit_code == 2, result.output
        assert "cannot be turned off" in result.output


def test_svsm_ui_passes_the_global_options(monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    import strands_valkey_session_manager.cli.viewer
    from strands_valkey_session_manager.cli.command import app

    calls: list[tuple[str, dict[str, Any]]] = []
    monkeypatch.setattr(strands_valkey_session_manager.cli.viewer, "serve", lambda url, **kw: calls.append((url, kw)))
    argv = ["--url", "redis://h:1", "--prefix", "p", "--timeout", "2", "ui", "--port", "9000", "--allow-delete"]
    result = CliRunner().invoke(app, argv)
    assert result.exit_code == 0, result.output
    assert calls == [
        (
            "redis://h:1",
            {
                "cluster": False,
                "prefix": "p",
                "host": "127.0.0.1",
                "port": 9000,
                "allow_delete": True,
                "timeout": 2.0,
                "allowed_hosts": [],
            },
        )
    ]


# -- find and follow -----------------------------------------------------------------------------


def _bounded_reads(repository: ValkeySessionRepository, monkeypatch: pytest.MonkeyPatch) -> list[int | None]:
    """Record the ``limit`` of every ``list_messages`` call the viewer makes."""
    limits: list[int | None] = []
    original = repository.list_messages

    def spy(session_id: str, agent_id: str, limit: int | None = None, offset: int = 0, **kwargs: Any) -> Any:
        limits.append(limit)
        return original(session_id, agent_id, limit=limit, offset=offset, **kwargs)

    monkeypatch.setattr(repository, "list_messages", spy)
    return limits


def test_search_in_a_session_finds_text_and_pages_through_it(
    repository: ValkeySessionRepository, seeded: ValkeyStorage, monkeypatch: pytest.MonkeyPatch
) -> None:
    limits = _bounded_reads(repository, monkeypatch)
    monkeypatch.setattr(viewer_app, "SCAN_PAGE", 20)
    monkeypatch.setattr(viewer_app, "MAX_MATCHES", 4)
    with TestClient(create_app(repository, storage=seeded), base_url=BASE) as client:
        # "number 1" is in messages 1, 10-19 and 100-129: 41 matches, 4 per request.
        found: list[int] = []
        url: str | None = session_path(LONG_SESSION, "/search?q=NUMBER+1")
        while url is not None:
            response = client.get(url)
            assert response.status_code == 200
            found += [int(n) for n in re.findall(r'<a class="mid" href="[^"]+#m(\d+)"', response.text)]
            nxt = re.search(r'<a class="button" href="([^"]+)">Go on searching', response.text)
            url = nxt.group(1).replace("&amp;", "&") if nxt else None
        assert found == [1, *range(10, 20), *range(100, 130)]
        # Every read was one bounded page (plus the message before it, for tool names).
        assert limits and all(limit is not None and limit <= 21 for limit in limits)

        hostile = client.get(session_path(HOSTILE_SESSION, "/search"), params={"q": "<script>"})
        assert "<mark>&lt;script&gt;</mark>" in hostile.text and "<script>alert" not in hostile.text
        link = re.search(r'<a href="([^"]+)">open in the timeline</a>', hostile.text)
        assert link is not None
        assert client.get(link.group(1).replace("&amp;", "&").split("#")[0]).status_code == 200
        # The tool's name and its input are searchable too.
        chart = client.get(session_path(HOSTILE_SESSION, "/search?q=chart")).text
        # The tool's name (message 1), its result (2) and the reply (3).
        assert re.findall(r'<a class="mid" href="[^"]+#m(\d+)"', chart) == ["1", "2", "3"]
        nothing = client.get(session_path(HOSTILE_SESSION, "/search?q=no+such+words"))
        assert "0 matches" in _Page(nothing.text).text
        assert client.get(session_path("missing", "/search?q=x")).status_code == 404


def test_the_live_fragment_brings_messages_appended_after_the_page(
    http: TestClient, repository: ValkeySessionRepository
) -> None:
    page = http.get(session_path(HOSTILE_SESSION, "?live=1")).text
    poller = re.search(r'<li class="live" hx-get="([^"]+)" hx-trigger="every 2s"', page)
    assert poller is not None
    url = poller.group(1).replace("&amp;", "&")
    assert parse_qs(urlsplit(url).query)["offset"] == ["6"]
    # Nothing new: 204, htmx swaps nothing and keeps polling.
    assert http.get(url, headers={"HX-Request": "true"}).status_code == 204
    repository.create_message(
        HOSTILE_SESSION, AGENT_ID, SessionMessage({"role": "user", "content": [{"text": "a <new> question"}]}, 6)
    )
    fresh = http.get(url, headers={"HX-Request": "true"})
    assert fresh.status_code == 200 and "<html" not in fresh.text
    assert re.findall(r'id="m(\d+)"', fresh.text) == ["6"] and "a &lt;new&gt; question" in fresh.text
    nxt = re.search(r'<li class="live" hx-get="([^"]+)"', fresh.text)
    assert nxt is not None and "offset=7" in nxt.group(1)
    assert 'hx-swap-oob="true"' in fresh.text and "Messages 1\u20137 of 7" in _Page(fresh.text).text
    # Without live=1 there is no poller; without htmx the fragment is the agent page.
    assert 'class="live"' not in http.get(session_path(HOSTILE_SESSION)).text
    assert http.get(url).status_code == 303
    # A timeline with more pages does not poll until its last page is loaded.
    long_page = http.get(session_path(LONG_SESSION, "?live=1")).text
    assert 'class="live"' not in long_page
    last = http.get(
        session_path(LONG_SESSION, f"/agents/{LONG_AGENT}?offset=100&live=1"), headers={"HX-Request": "true"}
    )
    assert '<li class="live"' in last.text and "offset=130" in last.text


def test_token_totals_per_agent_and_per_session(
    http: TestClient, repository: ValkeySessionRepository, monkeypatch: pytest.MonkeyPatch
) -> None:
    expected = {"input": 0, "output": 0, "total": 0, "with_usage": 0}
    for message in repository.list_messages(HOSTILE_SESSION, AGENT_ID):
        usage = message.message.get("metadata", {}).get("usage")
        if usage:
            expected["with_usage"] += 1
            expected["input"] += usage["inputTokens"]
            expected["output"] += usage["outputTokens"]
            expected["total"] += usage["totalTokens"]
    assert expected["with_usage"] == 3  # one per model reply
    fragment = http.get(session_path(HOSTILE_SESSION, "/usage"), headers={"HX-Request": "true"})
    assert fragment.status_code == 200 and "<html" not in fragment.text
    row = re.search(r'<tr class="usage-row">(.*?)</tr>', fragment.text, re.S)
    total = re.search(r'<tr class="usage-total">(.*?)</tr>', fragment.text, re.S)
    assert row is not None and total is not None
    numbers = re.findall(r'class="num">([\d,]+)<', row.group(1))
    want = [6, expected["with_usage"], expected["input"], expected["output"], expected["total"], 0, 0]
    assert [int(n.replace(",", "")) for n in numbers] == want
    assert [int(n.replace(",", "")) for n in re.findall(r'class="num">([\d,]+)<', total.group(1))] == want
    # The session page loads it when it opens (small sessions) and links to the full page.
    page = http.get(session_path(HOSTILE_SESSION)).text
    assert 'hx-trigger="load"' in page and session_path(HOSTILE_SESSION, "/usage") in page
    assert "<html" in http.get(session_path(HOSTILE_SESSION, "/usage")).text
    # Larger sessions count on request.
    monkeypatch.setattr(viewer_app, "AUTO_USAGE_MESSAGES", 100)
    with TestClient(create_app(repository), base_url=BASE) as client:
        large = client.get(session_path(LONG_SESSION)).text
    assert 'hx-trigger="load"' not in large and "Count tokens" in large
    # The scripted replies written straight through the repository carry no usage: zero, not guessed.
    long_usage = http.get(session_path(LONG_SESSION, "/usage")).text
    long_row = re.search(r'<tr class="usage-row">(.*?)</tr>', long_usage, re.S)
    assert long_row is not None
    assert [int(n.replace(",", "")) for n in re.findall(r'class="num">([\d,]+)<', long_row.group(1))] == [
        130,
        0,
        0,
        0,
        0,
        0,
        0,
    ]


def test_snapshot_pages_show_the_agent_state_diff_between_turns(http: TestClient) -> None:
    session = http.get(session_path(SNAPSHOT_SESSION)).text
    history = re.findall(r'<a class="snap" href="([^"]+)"', session)
    assert len(history) == 2  # newest first
    newest, oldest = (h.replace("&amp;", "&") for h in history)
    changed = http.get(newest).text
    diff = re.search(r'<section class="diff">.*?</section>', changed, re.S)
    assert diff is not None
    text = diff.group(0)
    assert "messages 2 → 4" in _Page(text).text
    assert '<span class="diff-del">-  &#34;step&#34;: 1</span>' in text
    assert '<span class="diff-add">+  &#34;step&#34;: 2,</span>' in text
    assert "&lt;b&gt;billing&lt;/b&gt;" in text and "<b>billing" not in text
    assert "<code>state</code>" in text and "<code>system_prompt</code>" not in text
    # The oldest has nothing before it; the latest compares with the newest history entry.
    assert '<section class="diff">' not in http.get(oldest).text
    latest = re.search(r'<a href="([^"]+)">latest</a>', session)
    assert latest is not None
    same = http.get(latest.group(1).replace("&amp;", "&")).text
    assert "messages 4 → 4; no other field changed" in _Page(same).text
    # A session-store agent has no state history: the page says so.
    assert "keeps the current agent state only" in http.get(session_path(HOSTILE_SESSION)).text
