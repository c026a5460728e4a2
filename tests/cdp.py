"""A small Chrome DevTools Protocol client for browser tests: Debian's headless `chromium` driven over
``--remote-debugging-pipe`` (JSON messages ended by NUL on file descriptors 3 and 4), so no websocket
library and no downloaded browser are needed.

::

    with Browser(tmp_path) as browser:
        page = browser.page()
        page.navigate("http://127.0.0.1:8000/")
        page.wait_for("document.documentElement.dataset.ready === 'true'")
        assert page.evaluate("document.title") == "Flock dashboard"
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import json
import os
import queue
import shutil
import signal
import threading
import time
from pathlib import Path
from typing import Any

CHROMIUM = shutil.which("chromium")


class BrowserError(RuntimeError):
    """A DevTools command failed, a page script threw, or a wait ran out."""


class Browser:
    """One headless chromium process; :meth:`page` opens tabs in it."""

    def __init__(self, tmp_path: Path, *, width: int = 1280, height: int = 900) -> None:
        assert CHROMIUM is not None, "Debian's `chromium` is not installed"
        to_browser_r, self._to_browser = os.pipe()
        self._from_browser, from_browser_w = os.pipe()
        # chromium reads commands from fd 3 and writes answers to fd 4. Our pipe ends are moved above
        # 9 first (the new pipes may be 3..6 themselves), then dup'ed onto 3 and 4 in the child.
        high_r = fcntl.fcntl(to_browser_r, fcntl.F_DUPFD_CLOEXEC, 10)
        high_w = fcntl.fcntl(from_browser_w, fcntl.F_DUPFD_CLOEXEC, 10)
        os.close(to_browser_r)
        os.close(from_browser_w)
        argv = [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            "--no-default-browser-check",
            "--remote-debugging-pipe",
            f"--window-size={width},{height}",
            f"--user-data-dir={tmp_path / 'chromium-profile'}",
            "about:blank",
        ]
        try:
            self.pid = os.posix_spawn(
                CHROMIUM,
                argv,
                os.environ,
                file_actions=[
                    (os.POSIX_SPAWN_DUP2, high_r, 3),
                    (os.POSIX_SPAWN_DUP2, high_w, 4),
                    (os.POSIX_SPAWN_OPEN, 1, os.devnull, os.O_WRONLY, 0),
                    (os.POSIX_SPAWN_OPEN, 2, os.devnull, os.O_WRONLY, 0),
                ],
            )
        finally:
            os.close(high_r)
            os.close(high_w)
        self._next = 0
        self._lock = threading.Lock()
        self._waiting: dict[int, queue.Queue[dict[str, Any]]] = {}
        self.events: queue.Queue[dict[str, Any]] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        buffer = b""
        while True:
            try:
                chunk = os.read(self._from_browser, 1 << 16)
            except OSError:
                chunk = b""
            if not chunk:
                for waiter in list(self._waiting.values()):
                    waiter.put({"error": {"message": "chromium closed the DevTools pipe"}})
                return
            buffer += chunk
            while b"\0" in buffer:
                raw, buffer = buffer.split(b"\0", 1)
                message = json.loads(raw)
                waiter = self._waiting.pop(message.get("id", -1), None)
                if waiter is not None:
                    waiter.put(message)
                else:
                    self.events.put(message)

    def send(
        self,
        method: str,
        params: dict[str, Any] | None = None,
        *,
        session: str | None = None,
        timeout: float = 60.0,
    ) -> dict[str, Any]:
        """Send one command and wait for its answer (``result``), raising on an error answer."""
        with self._lock:
            self._next += 1
            number = self._next
        waiter: queue.Queue[dict[str, Any]] = queue.Queue()
        self._waiting[number] = waiter
        message: dict[str, Any] = {"id": number, "method": method, "params": params or {}}
        if session is not None:
            message["sessionId"] = session
        os.write(self._to_browser, json.dumps(message).encode() + b"\0")
        try:
            answer = waiter.get(timeout=timeout)
        except queue.Empty:
            raise BrowserError(f"{method}: no answer from chromium in {timeout}s") from None
        if "error" in answer:
            raise BrowserError(f"{method}: {answer['error'].get('message')}")
        result: dict[str, Any] = answer.get("result", {})
        return result

    def page(self) -> Page:
        """A new tab, attached."""
        target = self.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = self.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        page = Page(self, session)
        page.send("Page.enable")
        page.send("Runtime.enable")
        return page

    def close(self) -> None:
        with contextlib.suppress(BrowserError, OSError):  # already gone
            self.send("Browser.close", timeout=10)
        deadline = time.monotonic() + 20
        while os.waitpid(self.pid, os.WNOHANG) == (0, 0):
            if time.monotonic() > deadline:
                os.kill(self.pid, signal.SIGKILL)
                os.waitpid(self.pid, 0)
                break
            time.sleep(0.05)
        os.close(self._to_browser)
        self._reader.join(timeout=5)
        os.close(self._from_browser)

    def __enter__(self) -> Browser:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Page:
    """One tab: navigate, run scripts, wait for a condition, take a screenshot."""

    def __init__(self, browser: Browser, session: str) -> None:
        self.browser = browser
        self.session = session

    def send(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        return self.browser.send(method, params, session=self.session)

    def navigate(self, url: str) -> None:
        """Load ``url`` and wait until its document has loaded."""
        self.send("Page.navigate", {"url": url})
        self.wait_for("document.readyState === 'complete' && location.href !== 'about:blank'")

    def evaluate(self, expression: str) -> Any:
        """The value of ``expression`` in the page (promises are awaited), as JSON-able data."""
        answer = self.send(
            "Runtime.evaluate", {"expression": expression, "awaitPromise": True, "returnByValue": True}
        )
        if "exceptionDetails" in answer:
            details = answer["exceptionDetails"]
            text = details.get("exception", {}).get("description") or details.get("text")
            raise BrowserError(f"the page script threw: {text}")
        return answer.get("result", {}).get("value")

    def wait_for(self, expression: str, timeout: float = 30.0) -> Any:
        """Evaluate ``expression`` until it is truthy; its value (a bound, not a speed assertion).
        Errors while a page loads (no context yet, a script not yet defined) count as false."""
        deadline = time.monotonic() + timeout
        last: BrowserError | None = None
        while True:
            try:
                value = self.evaluate(expression)
            except BrowserError as exc:
                value, last = None, exc
            if value:
                return value
            if time.monotonic() > deadline:
                raise BrowserError(f"still false after {timeout}s: {expression} (last error: {last})")
            time.sleep(0.1)

    def screenshot(self, path: Path) -> None:
        """A PNG of the viewport."""
        data = self.send("Page.captureScreenshot", {"format": "png"})["data"]
        path.write_bytes(base64.b64decode(data))

    def cookies(self) -> list[dict[str, Any]]:
        return list(self.browser.send("Storage.getCookies").get("cookies", []))
