"""Driving Debian's Chromium with Playwright for the console's browser tests: launch flags for a closed network,
screenshots under var/screenshots/ (the run prints the folder), a visible skip where Chromium or Playwright is
missing (a failure under REQUIRE_SERVICES=1, where CI installs both)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
# Without the background-networking flags Chromium's own outbound connections are refused on a closed network.
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
SCREENSHOTS = Path(__file__).resolve().parent.parent / "var" / "screenshots"
TAKEN: list[Path] = []  # this run's screenshots, for the terminal summary


def browser_missing() -> str:
    if not (Path(CHROMIUM).exists() or shutil.which(CHROMIUM)):
        return f"Chromium not found at {CHROMIUM} (apt-get install chromium)"
    try:
        import playwright.async_api  # noqa: F401
    except ImportError:
        return "Playwright for Python is not installed (pip install -r requirements-dev.txt)"
    return ""


def require_browser() -> None:
    missing = browser_missing()
    if missing:
        if os.environ.get("REQUIRE_SERVICES") == "1":
            pytest.fail(f"REQUIRE_SERVICES=1 but {missing}")
        pytest.skip(missing)


class Shots:
    """Saves each page as <test>-<n>-<name>.png and remembers the folder for the run's summary."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.count = 0
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)

    async def __call__(self, page, name: str, *, full_page: bool = True) -> Path:
        self.count += 1
        path = SCREENSHOTS / f"{self.prefix}-{self.count:02d}-{name}.png"
        await page.screenshot(path=str(path), full_page=full_page)
        TAKEN.append(path)
        return path
