"""The ``svsm ui`` viewer end to end in headless Chromium (Debian's ``chromium``, driven by Playwright).

uvicorn serves the app from a thread on a free loopback port; the data is written by a real
``strands.Agent`` (``tests/ui_seed.py``). No browser is downloaded: Playwright launches
``/usr/bin/chromium``. Without it the tests fail, unless ``SVSM_ALLOW_MISSING_BROWSER=1``, which
skips them. ``SVSM_UI_SCREENSHOTS=<dir>`` saves the list and session pages as PNG there (how the
README's screenshots are made: ``scripts/ui_screenshots.sh``).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import uvicorn
import valkey
from strands.types.session import SessionMessage

from strands_valkey_session_manager import ValkeySessionRepository
from strands_valkey_session_manager._keys import encode_id, message_member
from strands_valkey_session_manager.cli.viewer import create_app
from strands_valkey_session_manager.cli.viewer.render import id_segment
from strands_valkey_session_manager.storage import ValkeyStorage
from tests import ui_seed
from tests.servers import free_port
from tests.ui_seed import AGENT_ID, HOSTILE_SESSION, LONG_COUNT, LONG_SESSION, PLAIN_SESSIONS, SNAPSHOT_SESSION

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]

if not CHROMIUM.exists() and os.environ.get("SVSM_ALLOW_MISSING_BROWSER") == "1":
    pytest.skip(
        f"{CHROMIUM} is missing (apt-get install chromium) and SVSM_ALLOW_MISSING_BROWSER=1",
        allow_module_level=True,
    )

from playwright.sync_api import Browser, ConsoleMessage, Dialog, Page, sync_playwright  # noqa: E402


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: apt-get install chromium (or set SVSM_ALLOW_MISSING_BROWSER=1 to skip)")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture
def viewer(standalone_client: valkey.Valkey) -> Iterator[str]:
    """Base URL of a viewer on freshly seeded data, served by uvicorn from a thread."""
    storage = ValkeyStorage(standalone_client)
    ui_seed.seed(standalone_client, storage)
    app = create_app(ValkeySessionRepository(standalone_client), storage=storage, allow_delete=True)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, name="svsm-ui-test", daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            pytest.fail("uvicorn did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@dataclass
class Watched:
    """A page plus everything it reported: dialogs (alert), console errors, script errors."""

    page: Page
    dialogs: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


@pytest.fixture
def tab(browser: Browser) -> Iterator[Watched]:
    context = browser.new_context(viewport={"width": 1200, "height": 900})
    page = context.new_page()
    page.set_default_timeout(10_000)
    watched = Watched(page)

    def on_dialog(dialog: Dialog) -> None:
        watched.dialogs.append(f"{dialog.type}: {dialog.message}")
        dialog.dismiss()

    def on_console(message: ConsoleMessage) -> None:
        if message.type == "error":  # includes Content-Security-Policy violations
            watched.errors.append(message.text)

    page.on("dialog", on_dialog)
    page.on("console", on_console)
    page.on("pageerror", lambda error: watched.errors.append(str(error)))
    try:
        yield watched
    finally:
        context.close()
    assert watched.dialogs == [], "a dialog opened: stored text ran as script"
    assert watched.errors == [], "the page reported errors"


def _screenshot(page: Page, name: str) -> None:
    target = os.environ.get("SVSM_UI_SCREENSHOTS")
    if target:
        Path(target).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(target) / name), full_page=True)


def test_list_to_session_tool_call_image_and_hostile_text(viewer: str, tab: Watched) -> None:
    page = tab.page
    page.goto(viewer + "/")
    rows = page.locator("tr.session-row")
    assert rows.count() == len(PLAIN_SESSIONS) + 2
    assert rows.first.locator("td.sid").inner_text() == PLAIN_SESSIONS[-1]  # newest first
    _screenshot(page, "ui-list.png")

    page.get_by_role("link", name=HOSTILE_SESSION, exact=True).click()
    page.wait_for_load_state()
    assert page.url == viewer + "/sessions/" + id_segment(HOSTILE_SESSION)
    assert page.locator("h1").inner_text() == HOSTILE_SESSION
    assert AGENT_ID in page.locator("section.agent h2").inner_text()

    # Hostile text is on screen as text, and nothing it holds became an element.
    first = page.locator("li.message").first
    assert first.locator(".text").inner_text() == "Please draw <script>alert(1)</script> now"
    reply = page.locator("li.message", has_text="here is the chart")
    assert "<img src=x onerror=alert(1)>" in reply.inner_text()
    assert "[a link](javascript:alert(1))" in reply.inner_text()
    assert page.locator("main script").count() == 0
    assert page.locator("img[src='x']").count() == 0
    assert reply.locator("strong").inner_text() == "Done"  # Markdown rendered

    # Tool call: folded until clicked, then its input shows as JSON.
    tool_use = page.locator("details.tool-use")
    assert tool_use.get_attribute("open") is None
    assert not tool_use.locator("pre.json").is_visible()
    tool_use.locator("summary").click()
    assert tool_use.get_attribute("open") is not None
    arguments = tool_use.locator("pre.json")
    assert arguments.is_visible()
    assert '"title": "<img src=x onerror=alert(1)>"' in arguments.inner_text()

    # The tool's result holds an image: expand it and check both images really decoded.
    page.locator("details.tool-result summary").click()
    images = page.locator("figure.image img")
    assert images.count() == 2
    for n, (width, height) in enumerate(((24, 16), (40, 20))):
        image = images.nth(n)
        image.scroll_into_view_if_needed()
        image.evaluate("img => img.decode()")
        assert image.evaluate("img => [img.complete, img.naturalWidth, img.naturalHeight]") == [True, width, height]

    # The tool's result names its tool; token totals load by themselves (htmx).
    assert page.locator("details.tool-result summary .tool-name").inner_text() == "chart"
    totals = page.locator("tr.usage-total")
    totals.wait_for()
    assert totals.locator("th").first.inner_text() == "Session"

    page.locator("details.states, details.json-block").first.click()
    _screenshot(page, "ui-session.png")

    # The document is a download link with its name.
    document = page.get_by_role("link", name="report <q3>.pdf")
    assert document.get_attribute("download") is not None


def test_load_more_appends_pages_in_place(viewer: str, tab: Watched) -> None:
    page = tab.page
    page.goto(viewer + "/sessions/" + id_segment(LONG_SESSION))
    messages = page.locator("li.message")
    assert messages.count() == 50
    url = page.url
    more = page.locator("li.more a")
    more.click()
    page.wait_for_function("() => document.querySelectorAll('li.message').length === 100")
    assert page.url == url  # htmx swapped the next page in; no navigation
    assert messages.nth(99).locator(".text").inner_text() == "message number 99"
    more.click()
    page.wait_for_function(f"() => document.querySelectorAll('li.message').length === {LONG_COUNT}")
    assert page.locator("li.more").count() == 0
    ids = messages.evaluate_all("items => items.map(li => li.id)")
    assert ids == [f"m{n}" for n in range(LONG_COUNT)]

    # The session list pages the same way.
    page.goto(viewer + "/?limit=3")
    rows = page.locator("tr.session-row")
    assert rows.count() == 3
    page.get_by_role("link", name="Older sessions ↓").click()
    page.wait_for_function("() => document.querySelectorAll('tr.session-row').length === 6")
    page.get_by_role("link", name="Older sessions ↓").click()
    page.wait_for_function("() => document.querySelectorAll('tr.session-row').length === 8")
    assert page.locator("#more-sessions").count() == 0
    names = rows.locator("td.sid").all_inner_texts()
    assert names == [*reversed(PLAIN_SESSIONS), LONG_SESSION, HOSTILE_SESSION]


def test_delete_through_the_confirmation_form(viewer: str, tab: Watched, standalone_client: Any) -> None:
    page = tab.page
    page.goto(viewer + "/sessions/" + id_segment(HOSTILE_SESSION))
    page.get_by_role("link", name="Delete…").click()
    page.wait_for_load_state()
    page.get_by_role("checkbox").check()
    page.get_by_role("button", name="Delete permanently").click()
    page.wait_for_load_state()
    assert page.locator(".notice").inner_text() == f"Deleted session {HOSTILE_SESSION}."
    assert ValkeySessionRepository(standalone_client).read_session(HOSTILE_SESSION) is None
    assert page.locator("tr.session-row").count() == len(PLAIN_SESSIONS) + 1


def test_live_view_shows_new_messages_without_a_reload(viewer: str, tab: Watched, standalone_client: Any) -> None:
    page = tab.page
    page.goto(viewer + "/sessions/" + id_segment(HOSTILE_SESSION))
    page.get_by_role("link", name="Follow live").click()
    page.wait_for_load_state()
    assert page.locator("li.live").count() == 1
    page.evaluate("() => { window.stillTheSamePage = true }")
    repository = ValkeySessionRepository(standalone_client)
    for n, text in ((6, "Is the <b>report</b> ready?"), (7, "Yes: **ready**.")):
        role = "user" if n == 6 else "assistant"
        message = SessionMessage({"role": role, "content": [{"text": text}]}, n)
        repository.create_message(HOSTILE_SESSION, AGENT_ID, message)
    # htmx polls every 2 s; the two messages arrive without navigation.
    page.locator("#m7").wait_for()
    assert page.evaluate("() => window.stillTheSamePage") is True
    assert page.locator("#m6 .text").inner_text() == "Is the <b>report</b> ready?"
    assert page.locator("#m7 strong").inner_text() == "ready"
    assert page.locator("li.live").count() == 1  # still polling, after the new messages
    ids = page.locator("li.message").evaluate_all("items => items.map(li => li.id)")
    assert ids == [f"m{n}" for n in range(8)]
    page.wait_for_function("() => document.querySelector('p.range').textContent.includes('of 8')")
    _screenshot(page, "ui-live.png")


def test_find_sessions_and_text_then_open_the_match(viewer: str, tab: Watched) -> None:
    page = tab.page
    page.goto(viewer + "/")
    page.get_by_label("Id starts with").fill("tenant/")
    page.get_by_role("button", name="Filter").click()
    page.wait_for_load_state()
    assert page.locator("tr.session-row td.sid").all_inner_texts() == [HOSTILE_SESSION]
    page.goto(viewer + "/?user=carol&by=updated&from=2000-01-01")
    assert page.locator("tr.session-row td.sid").all_inner_texts() == ["plain-05", "plain-03", "plain-01"]
    page.goto(viewer + "/")
    assert page.locator("li.snapshot-session").all_inner_texts() == [SNAPSHOT_SESSION]

    page.goto(viewer + "/sessions/" + id_segment(HOSTILE_SESSION))
    page.get_by_label("Search messages").fill("CHART")
    page.get_by_role("button", name="Search").click()
    page.wait_for_load_state()
    assert page.locator("li.hit").count() == 3
    assert page.locator("li.hit mark").all_inner_texts() == ["chart", "Chart", "chart"]
    _screenshot(page, "ui-search.png")
    page.locator("li.hit").nth(1).get_by_role("link", name="open in the timeline").click()
    page.wait_for_load_state()
    assert page.url.endswith("#m2")
    assert page.locator("#m2 details.tool-result .tool-name").inner_text() == "chart"


def test_snapshot_state_diff_and_a_damaged_record(viewer: str, tab: Watched, standalone_client: Any) -> None:
    page = tab.page
    page.goto(viewer + "/sessions/" + id_segment(SNAPSHOT_SESSION))
    page.locator("a.snap").first.click()
    page.wait_for_load_state()
    diff = page.locator("section.diff")
    assert "messages 2 → 4" in diff.inner_text()
    assert page.locator("section.diff .diff-add").all_inner_texts() == [
        '+  "step": 2,',
        '+  "topic": "<b>billing</b>"',
    ]
    _screenshot(page, "ui-snapshot-diff.png")

    keys = ValkeySessionRepository(standalone_client).session_keys(HOSTILE_SESSION)
    standalone_client.hset(keys.messages, message_member(encode_id(AGENT_ID, "agent_id"), 3), "{garbage")
    page.goto(viewer + "/sessions/" + id_segment(HOSTILE_SESSION))
    damaged = page.locator("li.message.damaged")
    assert damaged.count() == 1 and damaged.get_attribute("id") == "m3"
    assert "This message cannot be shown" in damaged.inner_text()
    assert page.locator("li.message").count() == 6
    assert page.locator("#m4 .text").first.inner_text() == "Here is the report."
