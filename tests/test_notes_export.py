"""Notes in every export: HTML links and escaping, a Markdown task list, documented JSON, text."""

from __future__ import annotations

import dataclasses
import html.parser
import json
import os
from datetime import timedelta
from pathlib import Path

import pytest
from markdown_it import MarkdownIt
from mdit_py_plugins.tasklists import tasklists_plugin

from storage.notes import MeetingNotes, NoteItem, NotesContent, NotesUsage
from storage.records import Meeting
from tests.support.export_data import START, make_meeting, make_turn, render

EVIL = (
    '<script>window.__pwned = 1</script><img src=x onerror="window.__pwned = 2"> '
    "**bold** [x](javascript:alert(1))"
)


def notes_meeting(turn_count: int = 120) -> tuple[Meeting, MeetingNotes]:
    """A long meeting (so links must scroll) whose notes point at known turns."""
    people = [(1, "Alice"), (2, "Bob")]
    turns = [
        make_turn(i, 1 + i % 2, i * 10_000, i * 10_000 + 4_000, f"Turn number {i} is said here.")
        for i in range(1, turn_count + 1)
    ]
    content = NotesContent(
        summary=("We planned the launch.", EVIL),
        bullets=(NoteItem("Launch plan reviewed", 10_000, 14_000, (1,)),),
        decisions=(NoteItem("Launch on March 2", 800_000, 804_000, (80,)),),
        action_items=(
            NoteItem("Send the budget", 1_000_000, 1_004_000, (100,), owner="Bob", due="Friday"),
            NoteItem(EVIL, 1_100_000, 1_104_000, (110,), owner=EVIL, due=None),
        ),
        open_questions=(NoteItem("Who talks to the vendor?", 600_000, 604_000, (60,)),),
    )
    notes = MeetingNotes(
        id=1,
        meeting_id=7,
        revision=2,
        created_at=START + timedelta(hours=2),
        model="claude-haiku-4-5-20251001",
        language=None,
        prompt=None,
        content=content,
        usage=NotesUsage(1200, 300, 2, 0.0031),
    )
    meeting = make_meeting(people, turns, duration_ms=turn_count * 10_000 + 5_000)
    return dataclasses.replace(meeting, meeting_notes=notes), notes


class _Links(html.parser.HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.ids: set[str] = set()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        for name, value in attrs:
            if name == "id" and value:
                self.ids.add(value)


async def test_html_notes_come_before_the_transcript_and_link_to_turns() -> None:
    meeting, notes = notes_meeting()
    page = await render(meeting, "html")
    assert page.index('class="written-notes"') < page.index('id="transcript"')
    parser = _Links()
    parser.feed(page)
    hrefs = [
        a["href"] for tag, a in parser.tags if tag == "a" and a.get("href", "").startswith("#t")
    ]
    for item in (*notes.content.decisions, *notes.content.action_items):
        assert f"#t{item.turn_ids[0]}" in hrefs
    assert all(href[1:] in parser.ids for href in hrefs), "a link points at no turn"
    notes_part = page[page.index('class="written-notes"') : page.index('id="transcript"')]
    assert "<script>" not in notes_part and "<img" not in notes_part
    assert "&lt;script&gt;" in notes_part
    assert "Bob" in notes_part and "due Friday" in notes_part and "$0.0031" in notes_part


async def test_markdown_renders_a_task_list() -> None:
    meeting, notes = notes_meeting()
    markdown = await render(meeting, "md")
    rendered = MarkdownIt("commonmark").use(tasklists_plugin).render(markdown)
    boxes = rendered.count('<input class="task-list-item-checkbox"')
    assert boxes == len(notes.content.action_items)
    assert "Send the budget" in rendered
    assert "<script>" not in rendered and "<img" not in rendered
    assert "javascript:" not in rendered.replace("javascript:alert", "")  # no live link
    tokens = MarkdownIt("commonmark").parse(markdown)
    assert not [t for t in tokens if t.type == "link_open"], "notes text became a link"


async def test_json_documents_every_notes_field() -> None:
    from recorder.export.json_format import SCHEMA, meeting_notes_to_json

    meeting, notes = notes_meeting(5)
    data = json.loads(await render(meeting, "json"))
    written = data["meeting_notes"]
    assert written == meeting_notes_to_json(notes)
    notes_doc = SCHEMA.split("\nmeeting_notes (")[1].split("\n\n")[0]
    item_doc = SCHEMA.split("\nnote item (")[1].split("\n\n")[0]
    for field in written:
        assert f"\n    {field} " in notes_doc, f"meeting_notes.{field} is not documented"
    for field in written["action_items"][0]:
        assert f"\n    {field} " in item_doc, f"note item {field} is not documented"
    assert written["action_items"][0]["turn_ids"] == [100]
    assert written["usage"] == {
        "input_tokens": 1200,
        "output_tokens": 300,
        "calls": 2,
        "price_usd": 0.0031,
    }


async def test_text_export_lists_the_notes() -> None:
    meeting, _ = notes_meeting(5)
    text = await render(meeting, "txt")
    assert "[ ] Send the budget (Bob, due Friday) [00:16:40]" in text
    assert "Open questions:" in text and "Who talks to the vendor?" in text


async def test_meeting_without_notes_shows_no_notes_section() -> None:
    meeting = make_meeting([(1, "A")], [make_turn(1, 1, 0, 1000, "Hello there.")])
    assert 'class="written-notes"' not in await render(meeting, "html")
    assert json.loads(await render(meeting, "json"))["meeting_notes"] is None


# -- in a real browser -----------------------------------------------------------------

CHROMIUM = Path(os.environ.get("RECORDER_TEST_CHROMIUM", "/usr/bin/chromium"))


@pytest.mark.skipif(
    not CHROMIUM.exists(),
    reason=f"no Chromium at {CHROMIUM}; install it with 'apt-get install -y chromium'",
)
def test_browser_links_jump_to_the_turn_and_markup_stays_inert(tmp_path: Path) -> None:
    import asyncio

    from playwright.sync_api import sync_playwright

    from tests.test_browser import ARGS

    meeting, notes = notes_meeting()
    path = tmp_path / "notes.html"
    path.write_text(asyncio.run(render(meeting, "html")), encoding="utf-8")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        try:
            page = browser.new_page(viewport={"width": 1000, "height": 700})
            errors: list[str] = []
            page.on("pageerror", lambda error: errors.append(str(error)))
            page.goto(path.as_uri())
            for item in (*notes.content.decisions, *notes.content.action_items):
                target = f"t{item.turn_ids[0]}"
                page.goto(path.as_uri())
                assert not page.locator(f"#{target}").is_visible() or not _in_view(page, target)
                page.locator(f'.written-notes a[href="#{target}"]').first.click()
                page.wait_for_function(f"location.hash === '#{target}'")
                assert _in_view(page, target), f"clicking did not bring #{target} into view"
                assert page.locator(f"#{target} .text").inner_text() == (
                    f"Turn number {item.turn_ids[0]} is said here."
                )
            assert page.evaluate("window.__pwned") is None
            assert page.locator(".written-notes img, .written-notes script").count() == 0
            shown = page.locator(".written-notes .action").nth(1).inner_text()
            assert "<script>window.__pwned = 1</script>" in shown
            assert errors == [], errors
        finally:
            browser.close()


def _in_view(page: object, element_id: str) -> bool:
    box = page.locator(f"#{element_id}").bounding_box()  # type: ignore[attr-defined]
    height = page.viewport_size["height"]  # type: ignore[attr-defined]
    return box is not None and 0 <= box["y"] < height
