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

from playwright.sync_api import Page, sync_playwright  # noqa: E402

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
def chromium_page() -> Iterator[Page]:
    """One page of a headless Chromium, closed with its browser on the way out."""
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.set_default_timeout(20_000)
        try:
            yield page
        finally:
            browser.close()


def screenshot(page: Page, folder: Path, name: str) -> None:
    """The whole page as `folder/name.png`, kept for people to look at after the run."""
    folder.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(folder / f"{name}.png"), full_page=True)
