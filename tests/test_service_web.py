"""The live web view in headless Chromium: sign in, watch a meeting grow, nothing injected runs.

Needs Debian's ``chromium`` (see tests/test_browser.py); skips without it.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from recorder.service.app import create_app
from storage.db import create_engine, upgrade_database
from storage.store import TranscriptStore
from storage.tokens import create_token
from tests.support.service import START, add_turns, seed_meeting
from tests.support.timing import TIMEOUT

CHROMIUM = Path(os.environ.get("RECORDER_TEST_CHROMIUM", "/usr/bin/chromium"))
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-sync"]
EVIL = '<img src=x onerror="window.__pwned = 1"><script>window.__pwned = 2</script> budget'
# "Within 1 s of its commit", stretched on slow machines like every wait.
APPEAR_MS = 1000 * TIMEOUT / 5.0

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.slow,
    pytest.mark.skipif(not CHROMIUM.exists(), reason=f"no Chromium at {CHROMIUM}"),
]


class Site:
    def __init__(self, url: str) -> None:
        import uvicorn

        self.url = url
        config = uvicorn.Config(
            create_app(url, poll_s=3600), host="127.0.0.1", port=0, log_level="warning"
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> str:
        self.thread.start()
        deadline = time.monotonic() + TIMEOUT * 4
        while not self.server.started:  # uvicorn offers no event to wait on
            assert time.monotonic() < deadline and self.thread.is_alive(), "no server"
            time.sleep(0.01)
        port = self.server.servers[0].sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}"

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(TIMEOUT * 4)


def _with_store(url: str, work):
    async def main():
        store = await TranscriptStore.open(url)
        try:
            return await work(store)
        finally:
            await store.close()

    return _run(main())


def _run(coroutine):
    # A thread of its own: the async fixtures' loop may be running in this one.
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coroutine).result()


@pytest.fixture
def prepared(postgres_url: str) -> Iterator[tuple[str, str, int]]:
    async def setup() -> str:
        await upgrade_database(postgres_url)
        engine = create_engine(postgres_url)
        try:
            return (await create_token(engine, "browser"))[1]
        finally:
            await engine.dispose()

    token = _run(setup())
    finished = _with_store(
        postgres_url,
        lambda store: seed_meeting(store, "retro", [(5, 0, 900, "an older budget talk")]),
    )
    live = _with_store(
        postgres_url,
        lambda store: seed_meeting(
            store,
            "standup",
            [(101, 0, 900, EVIL)],
            names={101: "Alice"},
            finish=False,
            started_at=START + timedelta(days=1),
        ),
    )
    del finished
    yield postgres_url, token, live


def test_live_page_grows_and_never_runs_injected_markup(prepared) -> None:
    from playwright.sync_api import expect, sync_playwright

    url, token, meeting_id = prepared
    sessions: dict[int, int] = {}
    with Site(url) as base, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        try:
            page = browser.new_page()
            requests: list[str] = []
            errors: list[str] = []
            page.on("request", lambda request: requests.append(request.url))
            page.on("pageerror", lambda error: errors.append(str(error)))
            page.goto(base + "/")
            assert page.url.startswith(base + "/login")
            page.fill("input[name=token]", "rec_wrong")
            page.click("button[type=submit]")
            expect(page.locator(".error")).to_contain_text("unknown or revoked")
            page.fill("input[name=token]", token)
            page.click("button[type=submit]")
            rows = page.locator("tr.meeting")
            expect(rows).to_have_count(2)
            expect(page.locator("tr.meeting.live")).to_have_count(1)
            assert page.locator("tr.meeting.live a").inner_text() == "standup"
            page.click("tr.meeting.live a")
            expect(page.locator("p.turn")).to_have_count(1)
            assert page.locator("p.turn .text").inner_text().startswith("<img src=x")

            # Turns committed now appear within a second, in order, with colours.
            _with_store(
                url,
                lambda store: add_turns(
                    store,
                    meeting_id,
                    sessions,
                    [(102, 1000, 1900, "second <b>turn</b>")],
                    first_order=1,
                ),
            )
            expect(page.locator("p.turn")).to_have_count(2, timeout=APPEAR_MS)
            _with_store(
                url,
                lambda store: add_turns(
                    store,
                    meeting_id,
                    sessions,
                    [(101, 2000, 2900, EVIL + " again")],
                    first_order=2,
                ),
            )
            expect(page.locator("p.turn")).to_have_count(3, timeout=APPEAR_MS)
            runs = page.locator("section.run")
            expect(runs).to_have_count(3)
            assert runs.nth(0).get_attribute("class") == runs.nth(2).get_attribute("class")
            assert runs.nth(1).locator("h3").inner_text() == "102"

            async def finish(store: TranscriptStore) -> None:
                await add_turns(
                    store, meeting_id, sessions, [(102, 3000, 3900, "last words")], first_order=3
                )
                await store.finish_meeting(meeting_id, START + timedelta(days=1, seconds=5))

            _with_store(url, finish)
            expect(page.locator("main[data-ended='1']")).to_have_count(1)
            # The last turn was on the page before the meeting ended.
            assert page.locator("p.turn").last.inner_text().endswith("last words")
            assert page.locator(".kicker .status").inner_text().lower() == "completed"
            assert page.locator("main img, main script, main b").count() == 0
            assert page.evaluate("window.__pwned") is None

            page.fill("input[name=q]", "budget")
            page.press("input[name=q]", "Enter")
            expect(page.locator("li.hit")).to_have_count(3)
            assert page.evaluate("window.__pwned") is None
            download = page.request.get(base + f"/web/meetings/{meeting_id}/export?format=txt")
            assert download.ok and "last words" in download.text()
            assert "attachment" in download.headers["content-disposition"]
            assert (
                "script-src 'self'"
                in page.request.get(base + "/").headers["content-security-policy"]
            )
        finally:
            browser.close()
    assert errors == [], errors
    assert all(request.startswith(base) for request in requests), requests
