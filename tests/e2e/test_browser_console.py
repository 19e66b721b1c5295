"""The console in a real browser: Debian's Chromium driven by Playwright against a real server,
a real agent and a git repository served on 127.0.0.1.

Screenshots of the key pages go to `artifacts/screenshots/` (not committed).
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, Page, expect

from tests.support.browser import SCREENSHOTS, chromium, page_of, screenshot

pytestmark = pytest.mark.e2e

ADMIN_PASSWORD = "browser-test-password"


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium() as browser:
        yield browser


@pytest.fixture
def browser_page(browser: Browser) -> Iterator[Page]:
    """A page of its own browser context: what another test signed in to is not here."""
    with page_of(browser) as page:
        yield page


def shot(page: Page, name: str) -> None:
    screenshot(page, SCREENSHOTS, name)


def create_admin(fleet) -> None:
    fleet.site.manage(
        "shell",
        "-c",
        "from django.contrib.auth import get_user_model; "
        f"get_user_model().objects.create_superuser('admin', '', {ADMIN_PASSWORD!r})",
    )


def log_in(page: Page, url: str) -> None:
    page.goto(f"{url}/admin/login/")
    page.fill("#id_username", "admin")
    page.fill("#id_password", ADMIN_PASSWORD)
    page.click("input[type=submit]")
    expect(page.locator("#site-name")).to_contain_text("Gitfleet")


def test_console_from_login_to_a_ready_project(fleet, make_upstream, git_daemon, browser_page):
    page, url = browser_page, fleet.server.url
    create_admin(fleet)
    fleet.site.create_node("sleepy")  # registered, never started: offline
    upstream = make_upstream("console-demo")
    head = upstream.commit({"README.md": "from the browser\n"})
    fleet.start_agent()

    log_in(page, url)
    shot(page, "01-admin-index")

    page.goto(f"{url}/admin/nodes/node/")
    row = page.locator("tr", has_text="node-1")
    expect(row).to_contain_text("online", timeout=15_000)
    expect(page.locator("tr", has_text="sleepy")).to_contain_text("offline")
    shot(page, "02-nodes")

    page.goto(f"{url}/admin/projects/project/clone/")
    options = page.locator("#id_node option").all_inner_texts()
    assert any("node-1" in option for option in options)
    assert not any("sleepy" in option for option in options), "an offline node offered"
    page.fill("#id_name", "console-demo")
    page.fill("#id_git_url", git_daemon.url("console-demo.git"))
    page.fill("#id_branch", "main")
    page.select_option("#id_node", label=next(o for o in options if "node-1" in o))
    shot(page, "03-clone-form")
    page.click("input[type=submit][value='Request clone']")

    expect(page).to_have_url(re.compile(r"/admin/projects/project/[0-9a-f-]+/change/"))
    for _ in range(60):  # bounded: about 30 s
        if "ready" in page.locator("#content").inner_text():
            break
        page.wait_for_timeout(500)
        page.reload()
    content = page.locator("#content").inner_text()
    assert "ready" in content
    assert head[:12] in content
    for event_type in ("ProjectCreated", "JobQueued", "JobLeased", "JobSucceeded"):
        assert event_type in content, f"{event_type} missing from the timeline"
    shot(page, "04-project-ready-with-timeline")


def test_no_node_online_means_no_clone_action(fleet, browser_page):
    page, url = browser_page, fleet.server.url
    create_admin(fleet)
    log_in(page, url)

    page.goto(f"{url}/admin/projects/project/clone/")

    expect(page.locator("#no-node-accepts-work")).to_be_visible()
    assert page.locator("input[type=submit][value='Request clone']").count() == 0
    shot(page, "05-clone-without-online-nodes")


def test_browsable_api_and_swagger_render(fleet, browser_page):
    page, url = browser_page, fleet.server.url
    create_admin(fleet)
    log_in(page, url)

    page.goto(f"{url}/api/v1/projects/")
    expect(page.locator("body")).to_contain_text("Project List")
    shot(page, "06-browsable-api")

    page.goto(f"{url}/api/docs/")
    expect(page.locator(".swagger-ui")).to_contain_text("/api/v1/projects/clone", timeout=20_000)
    expect(page.locator(".swagger-ui")).to_contain_text("/api/v1/agent/lease")
    shot(page, "07-swagger")


def test_a_person_without_staff_rights_manages_their_tokens(fleet, browser_page):
    page, url = browser_page, fleet.server.url
    fleet.site.manage(
        "shell",
        "-c",
        "from django.contrib.auth import get_user_model; "
        f"get_user_model().objects.create_user('bob', '', {ADMIN_PASSWORD!r})",
    )

    page.goto(f"{url}/account/")
    expect(page).to_have_url(re.compile(r"/accounts/login/\?next=/account/"))
    page.fill("#id_username", "bob")
    page.fill("#id_password", ADMIN_PASSWORD)
    page.click("button[type=submit]")
    expect(page).to_have_url(f"{url}/account/")
    expect(page.locator("#projects")).to_contain_text("No projects yet")
    shot(page, "08-account")

    page.fill("#id_name", "laptop")
    page.click("#issue-token button[type=submit]")
    token = page.locator(".issued-token").inner_text()
    assert re.fullmatch(r"gfu_[0-9a-f]{12}_[A-Za-z0-9_-]{32,}", token)
    shot(page, "09-account-token-issued")

    page.click("text=back to my account")
    row = page.locator("tr.api-token", has_text="laptop")
    expect(row).to_contain_text("active")
    assert token not in page.content()
    row.locator("button", has_text="Revoke").click()
    expect(page.locator("tr.api-token", has_text="laptop")).to_contain_text("revoked")
    shot(page, "10-account-token-revoked")
