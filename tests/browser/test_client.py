"""Browser test of the hub's web client against a running hub.

Two guests in two browser contexts sign in, join one room, see each other
on presence, see each other typing, chat, react, edit, delete, upload a
file, reply in a thread and search. Screenshots go to target/browser/.

    python tests/browser/test_client.py --url http://127.0.0.1:PORT

Run through tests/browser/run.sh, which builds and starts the hub.
"""

import argparse
import os
import random
import sys
import time

from playwright.sync_api import expect, sync_playwright

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
# A 1x1 PNG.
PNG = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c6360f8cfc0f01f0005000201a5f2b1"
    "5d0000000049454e44ae426082"
)
TIMEOUT_MS = 10_000


def watch(page, problems):
    """Collect what would mean the client is broken: console errors, uncaught
    exceptions, and static files (the ES modules) that did not load."""
    page.on("console", lambda msg: problems.append(f"console.error: {msg.text}") if msg.type == "error" else None)
    page.on("pageerror", lambda exc: problems.append(f"uncaught: {exc}"))
    page.on(
        "response",
        lambda r: problems.append(f"{r.status} for {r.url}") if "/static/" in r.url and r.status != 200 else None,
    )
    page.on("requestfailed", lambda r: problems.append(f"failed request {r.url}") if "/static/" in r.url else None)


def sign_in(page, url, name):
    page.goto(url)
    page.fill("#guest-name", name)
    page.click("#guest-login")
    expect(page.locator("#app")).to_be_visible()
    return page.evaluate("() => JSON.parse(atob(localStorage.getItem('cbx.token').split('.')[1].replace(/-/g,'+').replace(/_/g,'/'))).sub")


def join(page, room):
    page.fill("#room-input", room)
    page.click("#room-join")
    expect(page.locator("#connection-status")).to_have_text("connected")
    expect(page.locator("#composer")).to_be_enabled()


def message(page, text):
    """The message element in the main list whose content has `text`."""
    return page.locator("#messages .message[data-id]").filter(has_text=text).first


def shot(page, out, name):
    page.screenshot(path=os.path.join(out, name), full_page=True)


def run(url, out):
    os.makedirs(out, exist_ok=True)
    room = f"browser-{random.randrange(1 << 32):08x}"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        try:
            ctx_a = browser.new_context(viewport={"width": 1280, "height": 800})
            ctx_b = browser.new_context(viewport={"width": 1280, "height": 800})
            a = ctx_a.new_page()
            b = ctx_b.new_page()
            problems = []
            for page in (a, b):
                watch(page, problems)
                page.set_default_timeout(TIMEOUT_MS)
                expect.set_options(timeout=TIMEOUT_MS)

            alice = sign_in(a, url, "alice")
            bob = sign_in(b, url, "bob")
            assert alice != bob, (alice, bob)
            # The client is ES modules: every one of them loaded and ran.
            modules = a.evaluate(
                "() => performance.getEntriesByType('resource').map((e) => e.name).filter((n) => n.endsWith('.js'))"
            )
            assert any(m.endswith("/static/js/main.js") for m in modules), modules
            assert not problems, problems
            print(f"modules ok ({len(modules)} loaded)")
            join(a, room)
            join(b, room)

            # Presence: each sees the other online.
            expect(a.locator(f'#presence-list .user[data-user="{bob}"] .status-dot.online')).to_be_visible()
            expect(b.locator(f'#presence-list .user[data-user="{alice}"] .status-dot.online')).to_be_visible()
            print("presence ok")

            # Typing: bob types, alice sees it.
            b.click("#composer")
            b.keyboard.type("hello from bob", delay=30)
            expect(a.locator("#typing")).to_contain_text("bob")
            print("typing ok")

            # Chat both ways.
            b.click("#send")
            expect(message(a, "hello from bob")).to_be_visible()
            a.fill("#composer", "hi bob, alice here")
            a.click("#send")
            expect(message(b, "hi bob, alice here")).to_be_visible()
            print("chat ok")

            # Alice reacts to bob's message; bob sees the reaction.
            theirs = message(a, "hello from bob")
            theirs.hover()
            theirs.locator(".act-react").click()
            a.locator('.emoji-choice[data-emoji="👍"]').first.click()
            expect(message(b, "hello from bob").locator('.reaction[data-emoji="👍"]')).to_be_visible()
            expect(message(b, "hello from bob").locator('.reaction[data-emoji="👍"] .count')).to_have_text("1")
            print("reaction ok")

            # Bob edits his message; alice sees the new text.
            mine = message(b, "hello from bob")
            mine.hover()
            mine.locator(".act-edit").click()
            edit = b.locator("#messages .edit-input")
            edit.fill("hello from bob (fixed)")
            edit.press("Enter")
            edited = message(a, "hello from bob (fixed)")
            expect(edited).to_be_visible()
            expect(edited.locator(".edited")).to_be_visible()
            print("edit ok")

            # Bob deletes it; alice sees a tombstone.
            mine = message(b, "hello from bob (fixed)")
            msg_id = mine.get_attribute("data-id")
            mine.hover()
            mine.locator(".act-delete").click()
            expect(a.locator(f'#messages .message[data-id="{msg_id}"] .content.tombstone')).to_be_visible()
            expect(a.locator(f'#messages .message[data-id="{msg_id}"]')).not_to_contain_text("hello from bob")
            print("delete ok")

            # Alice uploads a file; bob sees the attachment and can fetch it.
            a.fill("#composer", "a picture")
            a.set_input_files("#file-input", files=[{"name": "dot.png", "mimeType": "image/png", "buffer": PNG}])
            attachment = message(b, "a picture").locator(".attachment")
            expect(attachment).to_be_visible()
            href = attachment.first.get_attribute("href")
            assert href and href.startswith("/files/"), href
            resp = b.request.get(url + href)
            assert resp.status == 200, resp.status
            assert resp.headers.get("content-type", "").startswith("image/png"), resp.headers
            assert resp.body() == PNG
            print("file ok")

            # Bob replies in a thread on alice's message; alice opens it.
            root = message(b, "hi bob, alice here")
            root.hover()
            root.locator(".act-thread").click()
            expect(b.locator("#thread-panel")).to_be_visible()
            b.fill("#thread-composer", "a reply in the thread")
            b.press("#thread-composer", "Enter")
            expect(b.locator("#thread-messages")).to_contain_text("a reply in the thread")
            count = message(a, "hi bob, alice here").locator(".thread-count")
            expect(count).to_contain_text("1 reply")
            count.click()
            expect(a.locator("#thread-messages")).to_contain_text("a reply in the thread")
            print("thread ok")

            # Search finds alice's message for bob, with its room.
            b.fill("#search-input", "ALICE here")
            b.press("#search-input", "Enter")
            result = b.locator("#search-results .search-result").first
            expect(result).to_contain_text("hi bob, alice here")
            assert result.get_attribute("data-room") == room, result.get_attribute("data-room")
            print("search ok")

            shot(a, out, "alice.png")
            shot(b, out, "bob.png")

            # A kick by the room's owner: bob is told and does not reconnect.
            created = a.evaluate(
                """async (name) => {
                    const r = await fetch('/rooms', {method: 'POST', headers: {
                        'Authorization': 'Bearer ' + localStorage.getItem('cbx.token'),
                        'Content-Type': 'application/json'},
                        body: JSON.stringify({name, private: false, members: []})});
                    return r.json();
                }""",
                f"{room}-owned",
            )
            owned = created["id"]
            join(a, owned)
            join(b, owned)
            a.evaluate(
                """async ([room, target]) => {
                    const t = localStorage.getItem('cbx.token');
                    const ws = new WebSocket(`ws://${location.host}/chat/${encodeURIComponent(room)}?token=${t}`);
                    await new Promise((ok, fail) => { ws.onopen = ok; ws.onerror = fail; });
                    ws.send(JSON.stringify({type: 'kick', user: target}));
                    await new Promise((ok) => setTimeout(ok, 300));
                    ws.close();
                }""",
                [owned, bob],
            )
            expect(b.locator("#connection-status")).to_have_text("kicked")
            b.wait_for_timeout(2500)  # past the client's first reconnect delay
            expect(b.locator("#connection-status")).to_have_text("kicked")
            print("kick ok")

            # Bob leaves: alice sees him offline.
            ctx_b.close()
            expect(a.locator(f'#presence-list .user[data-user="{bob}"]')).to_have_attribute("data-status", "offline")
            print("offline ok")
            shot(a, out, "alice-after-bob-left.png")
            assert not problems, problems
            print("console ok")
        except Exception:
            for name, page in (("alice-failure.png", locals().get("a")), ("bob-failure.png", locals().get("b"))):
                try:
                    if page is not None:
                        shot(page, out, name)
                except Exception:  # noqa: BLE001 - best effort on the way out
                    pass
            raise
        finally:
            browser.close()


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--url", required=True)
    parser.add_argument("--out", default="target/browser")
    args = parser.parse_args()
    started = time.monotonic()
    run(args.url.rstrip("/"), args.out)
    print(f"browser test passed in {time.monotonic() - started:.1f}s; screenshots in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
