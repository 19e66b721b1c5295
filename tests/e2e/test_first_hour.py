"""The first hour, walked as a person in a real browser: sign in, see the local node online,
issue a token, clone a repository from the admin's "Add project", watch it reach `ready` with
progress and a readable timeline, and see a failing clone say why.

A real server, a real agent, a real `git daemon` on 127.0.0.1 (behind a slow relay, so that the
clone runs long enough to report progress) and Debian's Chromium. The screenshots are kept in
`artifacts/screenshots/first-hour/` (README, Development), one per step, numbered in order.
"""

from __future__ import annotations

import os
import random
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Page, expect

from tests.support.browser import SCREENSHOTS, chromium_page, screenshot
from tests.support.fleet import Fleet
from tests.support.gitservers import GitDaemon, Upstream, free_port, start_gated_relay

pytestmark = pytest.mark.e2e

SHOTS = SCREENSHOTS / "first-hour"
PASSWORD = "first-hour-password"
USER_TOKEN = re.compile(r"gfu_[0-9a-f]{12}_[A-Za-z0-9_-]{32,}")
# The relay lets the repository's ~400 KB through at 60 KB/s: several renewals, each carrying
# progress, happen while the clone runs.
RELAY_BYTES_PER_SECOND = 60_000


@pytest.fixture
def first_hour(tmp_path: Path) -> Iterator[Fleet]:
    # A failed attempt waits a minute before the next one, as it would in production, so the
    # failing clone is seen waiting for its retry, with the reason and the time of the retry.
    fleet = Fleet(tmp_path, RETRY_BACKOFF_SECONDS="60")
    try:
        yield fleet
    finally:
        fleet.close()


@pytest.fixture
def page() -> Iterator[Page]:
    shutil.rmtree(SHOTS, ignore_errors=True)  # this run's screenshots only
    with chromium_page() as page:
        yield page


def shot(page: Page, name: str) -> None:
    screenshot(page, SHOTS, name)


def a_repository_of_many_small_files(upstream: Upstream) -> str:
    # Random bytes do not compress: the transfer is as long as the files, object after object.
    rng = random.Random(17)
    files: dict[str, str | bytes] = {"README.md": "# The first hour\n"}
    for index in range(200):
        files[f"data/part-{index:03}.bin"] = rng.randbytes(2_000)
    return upstream.commit(files, "a repository worth watching")


def summary_row(page: Page, heading: str) -> str:
    return page.locator("#project-summary tr", has_text=heading).locator("td").inner_text()


def test_the_first_hour_in_a_browser(
    first_hour: Fleet, make_upstream, git_daemon: GitDaemon, page: Page
) -> None:
    fleet, url = first_hour, first_hour.server.url
    fleet.site.manage(
        "shell",
        "-c",
        "from django.contrib.auth import get_user_model; "
        f"get_user_model().objects.create_superuser('admin', '', {PASSWORD!r})",
    )
    head = a_repository_of_many_small_files(make_upstream("first-hour"))
    relay = start_gated_relay(git_daemon.port, rate=RELAY_BYTES_PER_SECOND)
    relay.open()
    fleet.start_agent(AGENT_GIT_TIMEOUT="120")
    try:
        walk(page, url, fleet, git_url=relay.url("first-hour.git"), head=head)
    finally:
        relay.stop()


def walk(page: Page, url: str, fleet: Fleet, *, git_url: str, head: str) -> None:
    # Sign in where the README says, and land on one's own page.
    page.goto(f"{url}/accounts/login/?next=/account/")
    shot(page, "01-sign-in")
    page.fill("#id_username", "admin")
    page.fill("#id_password", PASSWORD)
    page.click("button[type=submit]")
    expect(page).to_have_url(f"{url}/account/")
    shot(page, "02-account")

    # The local node is online.
    page.goto(f"{url}/admin/nodes/node/")
    expect(page.locator("tr", has_text="node-1")).to_contain_text("online", timeout=15_000)
    shot(page, "03-node-online")

    # A token, shown once, that works against the API.
    page.goto(f"{url}/account/")
    page.fill("#id_name", "first-hour")
    page.click("#issue-token button[type=submit]")
    token = page.locator(".issued-token").inner_text()
    assert USER_TOKEN.fullmatch(token)
    shot(page, "04-token-issued")
    api = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=30)
    assert api.get("/api/v1/projects/").status_code == 200
    page.click("text=back to my account")
    expect(page.locator("tr.api-token", has_text="first-hour")).to_contain_text("active")
    assert token not in page.content()

    # "Add project" in the admin is the clone form.
    page.goto(f"{url}/admin/projects/project/")
    page.locator(".object-tools a.addlink").click()
    expect(page).to_have_url(f"{url}/admin/projects/project/clone/")
    page.fill("#id_name", "first-hour")
    page.fill("#id_git_url", git_url)
    page.fill("#id_branch", "main")
    node_option = next(
        o for o in page.locator("#id_node option").all_inner_texts() if "node-1" in o
    )
    page.select_option("#id_node", label=node_option)
    shot(page, "05-clone-form")
    page.click("input[type=submit][value='Request clone']")
    expect(page).to_have_url(re.compile(r"/admin/projects/project/[0-9a-f-]+/change/"))

    # Watched until ready, with progress on the way.
    progress_seen = ""
    for _ in range(120):  # bounded: about 60 s
        status = summary_row(page, "Status")
        progress = summary_row(page, "Progress")
        if progress.strip() not in ("", "-") and not progress_seen:
            progress_seen = progress
            shot(page, "06-clone-in-progress")
        if status.startswith("ready"):
            break
        page.wait_for_timeout(500)
        page.reload()
    assert summary_row(page, "Status").startswith("ready")
    assert re.search(r"\d+%", progress_seen), f"no progress was shown: {progress_seen!r}"
    assert head in summary_row(page, "Commit")
    assert summary_row(page, "Why").strip() == "-"

    # The timeline reads as a table of sentences; the raw data stays folded until asked for.
    timeline = page.locator("#project-timeline tr.timeline-event")
    types = page.locator("#project-timeline tr.timeline-event td:nth-child(2) a").all_inner_texts()
    for event_type in ("ProjectCreated", "JobQueued", "JobLeased", "JobSucceeded"):
        assert event_type in types, f"{event_type} missing from the timeline"
    assert timeline.count() == len(types)
    succeeded = timeline.filter(has_text="JobSucceeded")
    expect(succeeded.locator(".timeline-summary")).to_contain_text(head[:12])
    assert not succeeded.locator("details").evaluate("element => element.open")
    expect(succeeded.locator("details pre").first).to_be_hidden()
    shot(page, "07-ready-with-timeline")
    succeeded.locator("details summary").click()
    expect(succeeded.locator("details pre").first).to_be_visible()
    shot(page, "08-event-data-unfolded")

    # A clone of a URL where nothing listens says why, and when it is tried again.
    nowhere = f"git://127.0.0.1:{free_port()}/nowhere.git"
    page.goto(f"{url}/admin/projects/project/add/")
    page.fill("#id_name", "unreachable")
    page.fill("#id_git_url", nowhere)
    page.fill("#id_branch", "main")
    page.select_option("#id_node", label=node_option)
    page.click("input[type=submit][value='Request clone']")
    expect(page).to_have_url(re.compile(r"/admin/projects/project/[0-9a-f-]+/change/"))
    for _ in range(60):  # bounded: about 30 s
        if summary_row(page, "Why").strip() != "-":
            break
        page.wait_for_timeout(500)
        page.reload()
    why = summary_row(page, "Why")
    assert summary_row(page, "Status").startswith("pending")
    assert "refused" in why.lower() and "tried again at" in why, why
    shot(page, "09-failing-clone-says-why")

    page.goto(f"{url}/admin/projects/project/")
    row = page.locator("#result_list tr", has_text="unreachable")
    expect(row.locator("td.field-reason")).to_contain_text("tried again at")
    expect(
        page.locator("#result_list tr", has_text="first-hour").locator("td.field-reason")
    ).to_have_text("-")
    shot(page, "10-project-list-with-reasons")

    # The person's own page and the API say the same.
    page.goto(f"{url}/account/")
    expect(page.locator("tr.project", has_text="unreachable")).to_contain_text("tried again at")
    shot(page, "11-account-with-reasons")
    [failing] = api.get("/api/v1/projects/", params={"status": "pending"}).json()["results"]
    reason = api.get(f"/api/v1/projects/{failing['id']}/status").json()["reason"]
    assert "refused" in reason["message"].lower() and reason["retry_at"]
    assert sorted(path.name for path in SHOTS.iterdir()) == [
        f"{name}.png"
        for name in (
            "01-sign-in",
            "02-account",
            "03-node-online",
            "04-token-issued",
            "05-clone-form",
            "06-clone-in-progress",
            "07-ready-with-timeline",
            "08-event-data-unfolded",
            "09-failing-clone-says-why",
            "10-project-list-with-reasons",
            "11-account-with-reasons",
        )
    ]
    assert os.path.getsize(SHOTS / "07-ready-with-timeline.png") > 0
