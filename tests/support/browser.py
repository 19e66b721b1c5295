"""Debian's Chromium driven by Playwright, for the browser tests: never a browser that a tool
downloads by itself. Importing this module skips the test module where Chromium is missing,
except in CI, which must run them."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

CHROMIUM = os.environ.get("GITFLEET_CHROMIUM", "/usr/bin/chromium")
SCREENSHOTS = Path(__file__).resolve().parents[2] / "artifacts" / "screenshots"

if not shutil.which(CHROMIUM):
    if os.environ.get("CI"):
        raise RuntimeError(f"CI runs the browser tests: install Chromium at {CHROMIUM}")
    pytest.skip(
        f"Chromium not found at {CHROMIUM} (apt-get install chromium)", allow_module_level=True
    )

from playwright.sync_api import Browser, Page, sync_playwright  # noqa: E402

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@contextmanager
def chromium() -> Iterator[Browser]:
    """A headless Chromium (launching one takes seconds), closed on the way out."""
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@contextmanager
def page_of(browser: Browser) -> Iterator[Page]:
    """A page in a browser context of its own (no cookies or storage of another page), closed
    with its context on the way out."""
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.set_default_timeout(20_000)
    try:
        yield page
    finally:
        page.close()


@contextmanager
def chromium_page() -> Iterator[Page]:
    """One page of a headless Chromium, closed with its browser on the way out."""
    with chromium() as browser, page_of(browser) as page:
        yield page


def screenshot(page: Page, folder: Path, name: str) -> None:
    """The whole page as `folder/name.png`, kept for people to look at after the run."""
    folder.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(folder / f"{name}.png"), full_page=True)
