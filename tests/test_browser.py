"""The HTML export in headless Chromium: it renders, its script works, injected script does not.

Needs Debian's ``chromium`` at /usr/bin/chromium (CI: ``apt-get install -y chromium``);
the test skips with that reason when it is missing. Playwright drives it; we never
download a browser (``playwright install`` is not used).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.support.export_data import golden_meeting, make_meeting, make_turn, render

CHROMIUM = Path(os.environ.get("RECORDER_TEST_CHROMIUM", "/usr/bin/chromium"))
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(),
    reason=f"no Chromium at {CHROMIUM}; install it with 'apt-get install -y chromium'",
)


def _hostile_meeting():
    meeting = golden_meeting()
    evil = make_turn(
        99,
        202,
        40_000,
        42_000,
        '<script>window.__pwned = 1</script><img src=x onerror="window.__pwned = 2"> find me',
        name="李雷",
    )
    turns = sorted([*meeting.turns, evil], key=lambda t: (t.start_ms, t.id))
    return make_meeting(
        [(p.uid, p.display_name) for p in meeting.participants],
        turns,
        channel=meeting.summary.channel,
        notes=meeting.notes,
        duration_ms=7_205_000,
    )


@pytest.fixture(scope="module")
def pages(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The HTML files, rendered before Playwright starts (its sync API holds an event loop)."""
    import asyncio

    folder = tmp_path_factory.mktemp("browser")
    long_word = make_meeting([(1, "A")], [make_turn(1, 1, 0, 1000, "x" * 400)])
    files = {
        "meeting": (_hostile_meeting(), folder / "meeting.html"),
        "long": (long_word, folder / "long.html"),
    }
    for meeting, path in files.values():
        path.write_text(asyncio.run(render(meeting, "html")), encoding="utf-8")
    return {name: path for name, (_, path) in files.items()}


@pytest.fixture(scope="module")
def browser(pages: dict[str, Path]):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def page_file(pages: dict[str, Path]) -> Path:
    return pages["meeting"]


def _open(browser, path: Path, width: int, *, javascript: bool = True):
    context = browser.new_context(
        viewport={"width": width, "height": 900}, java_script_enabled=javascript
    )
    page = context.new_page()
    requests: list[str] = []
    errors: list[str] = []
    page.on("request", lambda request: requests.append(request.url))
    page.on("console", lambda message: errors.append(message.text))
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(path.as_uri())
    return context, page, requests, errors


def test_page_renders_turns_and_blocks_injected_script(browser, page_file: Path) -> None:
    context, page, requests, errors = _open(browser, page_file, 1000)
    try:
        assert page.title() == "design-review ✨ · meeting 7"
        assert page.locator("p.turn").count() == 10
        # The injected turn joins 李雷's next turn: 8 runs of consecutive turns.
        assert page.locator("section.run").count() == 8
        assert page.locator("#t1 .text").inner_text() == (
            "Good morning, everyone. Let's get started."
        )
        evil = page.locator("#t99 .text").inner_text()
        assert evil.startswith("<script>window.__pwned = 1</script><img src=x")
        assert page.evaluate("window.__pwned") is None
        assert page.locator("main img").count() == 0
        assert requests == [page_file.as_uri()], "the page fetched something"
        assert errors == [], errors
        # Our own script ran (the CSP hash matches): the tools bar is shown.
        assert page.locator("#tools").is_visible()
        page.screenshot(path=str(page_file.with_name("desktop.png")), full_page=True)
    finally:
        context.close()


def test_filter_by_speaker_and_find(browser, page_file: Path) -> None:
    from playwright.sync_api import expect

    context, page, _, errors = _open(browser, page_file, 1000)
    try:
        page.get_by_label("Alice Martín").uncheck()
        visible = page.locator("p.turn:visible")
        assert visible.count() == 6
        assert page.locator("#count").inner_text() == "6 turns"
        page.get_by_label("Alice Martín").check()
        page.locator("#find").fill("find me")
        # (wait_for_function would eval a string, which the page's CSP rightly forbids)
        expect(page.locator("#count")).to_have_text("1 turn")
        assert page.locator("p.turn:visible").count() == 1
        assert page.locator("p.turn:visible").get_attribute("id") == "t99"
        assert page.evaluate("CSS.highlights.get('find').size") == 1  # the match is marked
        page.locator("#find").fill("")
        expect(page.locator("#count")).to_have_text("")
        assert page.locator("p.turn:visible").count() == 10
        assert errors == []
    finally:
        context.close()


def test_page_reads_fully_without_script(browser, page_file: Path) -> None:
    context, page, _, _ = _open(browser, page_file, 1000, javascript=False)
    try:
        assert page.locator("p.turn:visible").count() == 10
        assert not page.locator("#tools").is_visible()
        assert "Launch is on track for Friday." in page.locator(".notes").inner_text()
    finally:
        context.close()


def test_page_fits_a_phone(browser, page_file: Path) -> None:
    context, page, _, _ = _open(browser, page_file, 375)
    try:
        overflow = page.evaluate(
            "document.documentElement.scrollWidth - document.documentElement.clientWidth"
        )
        assert overflow <= 0, f"the page scrolls sideways by {overflow}px on a phone"
        font_px = page.evaluate(
            "parseFloat(getComputedStyle(document.querySelector('p.turn')).fontSize)"
        )
        assert font_px >= 14
        page.screenshot(path=str(page_file.with_name("phone.png")), full_page=True)
    finally:
        context.close()


def test_page_prints_every_turn(browser, page_file: Path) -> None:
    context, page, _, _ = _open(browser, page_file, 1000)
    try:
        page.get_by_label("Alice Martín").uncheck()  # hidden on screen ...
        page.emulate_media(media="print")
        assert page.locator("p.turn:visible").count() == 10  # ... but printed
        assert not page.locator("#tools").is_visible()
        pdf = page.pdf()
        assert pdf.startswith(b"%PDF")
    finally:
        context.close()


def test_a_long_unbroken_word_does_not_widen_the_page(browser, pages: dict[str, Path]) -> None:
    context, page, _, _ = _open(browser, pages["long"], 375)
    try:
        assert page.evaluate(
            "document.documentElement.scrollWidth <= document.documentElement.clientWidth"
        )
    finally:
        context.close()
