"""Open a local HTML file in headless Chromium, offline, and watch what it does.

Every request other than the file itself is blocked and recorded, so a test
can assert that a page fetches nothing; console errors and uncaught page
errors are collected; ``screenshot()`` writes a PNG.  Reusable by any test
of a page stprof writes::

    with Browser() as browser, browser.open(path) as visit:
        visit.page.click("th[data-key=calls] button")
        visit.screenshot(tmp_path / "page.png")
        assert visit.problems() == []
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run", "--disable-sync"]


def chromium_path() -> str | None:
    """Debian's chromium (tools/setup-system.sh installs it), or $STPROF_CHROMIUM."""
    return os.environ.get("STPROF_CHROMIUM") or shutil.which("chromium")


def unavailable_reason() -> str:
    """'' when a headless browser can be driven here, else why not."""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "playwright is not installed (make setup)"
    if chromium_path() is None:
        return "no chromium (tools/setup-system.sh installs Debian's)"
    return ""


@dataclass
class Visit:
    """One page opened from a file, and what it tried and said while open."""

    page: Any  # playwright.sync_api.Page
    url: str
    blocked: list[str] = field(default_factory=list)
    console_errors: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)

    def screenshot(self, path: Path, full_page: bool = True) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.page.screenshot(path=str(path), full_page=full_page)
        return path

    def problems(self) -> list[str]:
        """Everything that went wrong: requests that tried to leave, errors."""
        return ([f"request: {url}" for url in self.blocked]
                + [f"console error: {text}" for text in self.console_errors]
                + [f"page error: {text}" for text in self.page_errors])


class Browser:
    """A headless Chromium for the duration of a ``with`` block."""

    def __init__(self) -> None:
        self._playwright: Any = None
        self._browser: Any = None

    def __enter__(self) -> Browser:
        from playwright.sync_api import sync_playwright

        self._playwright = sync_playwright().start()
        try:
            self._browser = self._playwright.chromium.launch(
                executable_path=chromium_path(), args=CHROMIUM_ARGS, headless=True)
        except BaseException:
            self._playwright.stop()
            raise
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 traceback: TracebackType | None) -> None:
        try:
            if self._browser is not None:
                self._browser.close()
        finally:
            self._playwright.stop()

    @contextmanager
    def open(self, path: Path, width: int = 1280, height: int = 900,
             media: str = "screen") -> Iterator[Visit]:
        """``path`` in a fresh context of ``width`` x ``height``, the network cut off."""
        context = self._browser.new_context(viewport={"width": width, "height": height},
                                            offline=True, accept_downloads=True)
        page = context.new_page()
        url = path.resolve().as_uri()
        visit = Visit(page=page, url=url)

        def route(request_route: Any) -> None:
            if request_route.request.url == url:
                request_route.continue_()
            else:
                request_route.abort()

        def on_request(request: Any) -> None:  # every request, routed or not, is seen here
            if request.url != url and not request.url.startswith(("data:", "blob:")):
                visit.blocked.append(request.url)

        def on_console(message: Any) -> None:
            if message.type == "error":
                visit.console_errors.append(message.text)

        context.route("**/*", route)
        page.on("request", on_request)
        page.on("console", on_console)
        page.on("pageerror", lambda error: visit.page_errors.append(str(error)))
        try:
            page.emulate_media(media=media)
            page.goto(url, wait_until="load")
            yield visit
        finally:
            context.close()
