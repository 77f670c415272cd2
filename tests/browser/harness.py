"""What the browser tests share: the hub they start and stop, the browser,
and the steps every test takes (sign in, join, find a message, screenshot).

The hub runs with a fixed secret and guest login, on a loopback port the
test picks, so a test can stop it and start it again (the client must call
that a connection problem) and the tokens stay valid across the restart.
"""

import json
import os
import secrets
import socket
import subprocess
import tempfile
import time
import urllib.request

from playwright.sync_api import expect

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
TIMEOUT_MS = 10_000
PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1280, "height": 800}


class Hub:
    """The hub binary on 127.0.0.1:<port>, started, stopped and restarted
    with the same data directory, port and secret."""

    def __init__(self, binary, out):
        self.binary = binary
        self.out = out
        self.data = tempfile.mkdtemp(prefix="cbx-browser-")
        self.secret = secrets.token_hex(32)
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = None
        self.starts = 0

    def start(self):
        self.starts += 1
        log = open(os.path.join(self.out, f"hub-{self.port}-{self.starts}.log"), "w")
        self.proc = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--data-dir", self.data,
             "--jwt-secret", self.secret, "--allow-guest"],
            stdout=log, stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the hub exited with {self.proc.returncode}; see {log.name}")
            try:
                with urllib.request.urlopen(self.url + "/healthz", timeout=1) as r:
                    if r.status == 200:
                        return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError("the hub did not answer /healthz within 20 s")

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self.proc = None


def launch(p):
    return p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)


def watch(page, problems):
    """Collect what would mean the client is broken: console errors, uncaught
    exceptions, and static files (the ES modules) that did not load."""
    page.on("console", lambda msg: problems.append(f"console.error: {msg.text}") if msg.type == "error" and not expected_noise(msg.text) else None)
    page.on("pageerror", lambda exc: problems.append(f"uncaught: {exc}"))
    page.on(
        "response",
        lambda r: problems.append(f"{r.status} for {r.url}") if "/static/" in r.url and r.status != 200 else None,
    )
    page.on("requestfailed", lambda r: problems.append(f"failed request {r.url}") if "/static/" in r.url else None)


# While the hub is stopped, or refuses a room, on purpose, the browser
# logs the failed connections and requests itself; those are the test's
# doing, not the client's. A step sets the messages it expects here.
EXPECTED = []


def expected_noise(text):
    return any(pattern in text for pattern in EXPECTED)


def page_for(browser, problems, viewport=DESKTOP):
    ctx = browser.new_context(viewport=viewport)
    page = ctx.new_page()
    watch(page, problems)
    page.set_default_timeout(TIMEOUT_MS)
    expect.set_options(timeout=TIMEOUT_MS)
    return page


def sub_of(page):
    return page.evaluate(
        "() => JSON.parse(atob(localStorage.getItem('cbx.token').split('.')[1].replace(/-/g,'+').replace(/_/g,'/'))).sub"
    )


def sign_in(page, url, name):
    page.goto(url)
    page.fill("#guest-name", name)
    page.click("#guest-login")
    expect(page.locator("#app")).to_be_visible()
    return sub_of(page)


def join(page, room):
    page.fill("#room-input", room)
    page.click("#room-join")
    expect(page.locator("#connection-status")).to_have_text("connected")
    expect(page.locator("#composer")).to_be_enabled()


def say(page, text):
    page.fill("#composer", text)
    page.press("#composer", "Enter")
    expect(message(page, text)).to_be_visible()


def message(page, text):
    """The message element in the main list whose content has `text`."""
    return page.locator("#messages .message[data-id]").filter(has_text=text).first


def api(page, method, path, body=None):
    """An HTTP call from the page with its token: (status, JSON)."""
    return page.evaluate(
        """async ([method, path, body]) => {
            const r = await fetch(path, {method, headers: {
                'Authorization': 'Bearer ' + localStorage.getItem('cbx.token'),
                'Content-Type': 'application/json'},
                body: body === null ? undefined : JSON.stringify(body)});
            const text = await r.text();
            let data = null;
            try { data = JSON.parse(text); } catch (_) { data = text; }
            return [r.status, data];
        }""",
        [method, path, body],
    )


class Shots:
    """Numbered screenshots, one or more a step, under target/browser/."""

    def __init__(self, out, prefix):
        self.out = out
        self.prefix = prefix
        self.n = 0

    def __call__(self, page, name):
        self.n += 1
        path = os.path.join(self.out, f"{self.prefix}-{self.n:02d}-{name}.png")
        page.screenshot(path=path, full_page=True)
        return path


def focused(page):
    """What has the keyboard focus: id, class, role and label."""
    return page.evaluate(
        """() => { const e = document.activeElement; return e ? {
            id: e.id, cls: e.className && e.className.baseVal === undefined ? e.className : '',
            tag: e.tagName.toLowerCase(), label: e.getAttribute('aria-label') || e.textContent.trim().slice(0, 40),
        } : null; }"""
    )


def axe_check(page, axe_source, view, out, skip_rules=()):
    """Runs axe-core (injected by the test, never served by the hub) on the
    page as it is; writes the violations to target/browser/axe-<view>.json
    and returns them."""
    if not page.evaluate("() => typeof window.axe !== 'undefined'"):
        # Through the DevTools protocol: the hub's Content-Security-Policy
        # (script-src 'self') rightly refuses an injected <script>.
        cdp = page.context.new_cdp_session(page)
        cdp.send("Runtime.evaluate", {"expression": axe_source})
        cdp.detach()
    result = page.evaluate(
        """async (skip) => {
            const rules = {};
            for (const r of skip) rules[r] = { enabled: false };
            const res = await axe.run(document, { rules, resultTypes: ['violations'] });
            return res.violations.map((v) => ({ id: v.id, impact: v.impact, help: v.help,
                nodes: v.nodes.map((n) => ({ target: n.target.join(' '), summary: n.failureSummary })) }));
        }""",
        list(skip_rules),
    )
    with open(os.path.join(out, f"axe-{view}.json"), "w") as f:
        json.dump(result, f, indent=2, ensure_ascii=False)
    return result
