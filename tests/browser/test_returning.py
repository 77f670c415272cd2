"""Browser test of the hub's web client: coming back, who is who, and the
rough edges.

Several users in several browser contexts (one of them phone-sized):
focus after sign-in; the welcome screen's count agrees with the sidebar;
no internal details in the header; members picked from known users (an
unknown name is refused); two users called "bob" told apart; a guest who
signs out and comes back is the same user ("Continue as", or the same
name), and "Forget me" really forgets; coming back shows the mention
badge on the room, a "new since you left" line and a jump-to-latest
button; no mention toast for the open room; @ autocomplete; drafts kept
per room across switches and a reload; a client back from another room
sees the edits, deletes and reactions it missed (recovery by id, no
update event drawn as a message); leaving a room; no "Loading
messages…" under a refusal; a stopped hub reported as a connection
problem with a countdown and "Retry now"; a 390x844 phone layout; a
keyboard-only walk; axe-core on the main views. Screenshots go to
target/browser/returning-NN-*.png, axe reports to target/browser/axe-*.json.

    python tests/browser/test_returning.py --hub target/debug/examples/hub --axe path/to/axe.min.js
"""

import argparse
import os
import random
import re
import sys
import time

from playwright.sync_api import expect, sync_playwright

import harness
from harness import (
    DESKTOP, PHONE, Hub, Shots, api, axe_check, focused, join, launch, message, page_for, say, sign_in, sub_of,
)


def token_exp(page):
    return page.evaluate(
        "() => JSON.parse(atob(localStorage.getItem('cbx.token').split('.')[1].replace(/-/g,'+').replace(/_/g,'/'))).exp"
    )


def stat_online(page):
    return page.locator('#stats .stat[data-stat="online"] b')


def online_count(page):
    return int(page.locator("#online-count").inner_text().split()[0])


def sign_out(page, forget=False):
    page.click("#sign-out")
    expect(page.locator("#signout-dialog")).to_be_visible()
    expect(page.locator("#signout-ok")).to_be_focused()
    page.click("#signout-forget" if forget else "#signout-ok")
    expect(page.locator("#signin-screen")).to_be_visible()


def no_violations(results, view):
    assert not results, f"axe found problems in the {view} view:\n" + "\n".join(
        f"  {v['id']} ({v['impact']}): {v['help']} -> {[n['target'] for n in v['nodes']][:5]}" for v in results
    )
    print(f"axe {view}: no violations")


def run(hub, out, axe_source):
    tag = f"{random.randrange(1 << 32):08x}"
    room = f"plaza-{tag}"
    other = f"corner-{tag}"
    shot = Shots(out, "returning")
    with sync_playwright() as p:
        browser = launch(p)
        problems = []
        pages = {}
        try:
            a = pages["alice"] = page_for(browser, problems)
            b = pages["bob"] = page_for(browser, problems)
            c = pages["other-bob"] = page_for(browser, problems)

            # The sign-in screen, checked by axe before anyone signs in.
            a.goto(hub.url)
            expect(a.locator("#guest-name")).to_be_focused()
            no_violations(axe_check(a, axe_source, "signin", out), "sign-in")
            shot(a, "signin")

            # After sign-in the focus is on the rooms, not the page body.
            alice = sign_in(a, hub.url, "alice")
            expect(a.locator("#room-input")).to_be_focused()
            bob = sign_in(b, hub.url, "bob")
            other_bob = sign_in(c, hub.url, "bob")
            assert bob != other_bob, "two guests called bob are two users"
            print("focus after sign-in ok")

            # The welcome screen counts who is online as the sidebar does.
            expect(a.locator(f'#presence-list .user[data-user="{other_bob}"] .status-dot.online')).to_be_visible()
            expect(stat_online(a)).to_have_text(str(online_count(a)))
            assert online_count(a) == 3, online_count(a)
            no_violations(axe_check(a, axe_source, "welcome", out), "welcome")
            shot(a, "welcome-counts-agree")
            print("welcome count ok")

            join(a, room)
            join(b, room)
            join(c, room)
            say(b, "bob one here")
            say(c, "bob two here")
            # Namesakes: the same name, told apart by a short id wherever it shows.
            first = message(a, "bob one here").locator(".author").inner_text()
            second = message(a, "bob two here").locator(".author").inner_text()
            assert first != second and first.startswith("bob (") and second.startswith("bob ("), (first, second)
            people = [a.locator(f'#presence-list .user[data-user="{s}"] .username').inner_text() for s in (bob, other_bob)]
            assert people[0] != people[1] and all(n.startswith("bob (") for n in people), people
            shot(a, "namesakes")
            print("namesakes ok")

            # No internal details (epoch, last seen id) in the header.
            meta = a.locator("#room-meta").inner_text()
            assert "epoch" not in meta and "last seen" not in meta, meta
            assert "epoch" not in (a.locator(f'#room-list [data-room="{room}"] .nav-btn').get_attribute("title") or "")
            no_violations(axe_check(a, axe_source, "room", out), "room")
            print("header ok")

            # @ autocomplete offers both bobs; Enter inserts the mention.
            a.click("#composer")
            a.keyboard.type("hey @bo")
            options = a.locator("#composer-form .mention-list [role=option]")
            expect(options).to_have_count(2)
            assert a.locator("#composer").get_attribute("aria-activedescendant").startswith("mention-list-")
            shot(a, "mention-autocomplete")
            a.keyboard.press("Enter")
            expect(a.locator("#composer")).to_have_value("hey @bob ")
            a.fill("#composer", "")
            print("@ autocomplete ok")

            # Members are picked from known users: an unknown name is refused,
            # and the chip carries the real id.
            a.click("#create-room")
            expect(a.locator("#create-room-dialog")).to_be_visible()
            a.fill("#new-room-name", f"secret-{tag}")
            a.check("#new-room-private")
            a.click("#new-room-members")
            a.keyboard.type("nobody-at-all")
            a.keyboard.press("Enter")
            expect(a.locator("#create-room-error")).to_contain_text("Nobody called")
            expect(a.locator("#new-room-chips .chip")).to_have_count(0)
            a.fill("#new-room-members", "")
            a.keyboard.type("bo")
            expect(a.locator("#create-room-dialog [role=option]")).to_have_count(2)
            expect(a.locator("#new-room-members")).to_have_attribute("aria-expanded", "true")
            no_violations(axe_check(a, axe_source, "create-room", out), "create-room dialog")
            shot(a, "people-picker")
            target = a.locator(f'#create-room-dialog [role=option][data-sub="{bob}"]')
            target.click()
            expect(a.locator(f'#new-room-chips .chip[data-sub="{bob}"]')).to_be_visible()
            shot(a, "member-chip")
            a.click("#new-room-submit")
            expect(a.locator("#view-title")).to_contain_text(f"secret-{tag}")
            status, rooms = api(a, "GET", "/rooms")
            secret = next(r for r in rooms if r["name"] == f"secret-{tag}")
            assert sorted(secret["members"]) == sorted([alice, bob]), secret
            print("people picker ok")

            # A refusal: the other bob is not a member; no "Loading messages…" under the error.
            harness.EXPECTED[:] = ["Unexpected response code: 403", "status of 404"]
            c.fill("#room-input", secret["id"])
            c.click("#room-join")
            expect(c.locator("#notice")).to_contain_text("private")
            expect(c.locator("#messages .loading")).to_have_count(0)
            expect(c.locator("#composer")).to_be_disabled()
            shot(c, "refused-no-loading")
            harness.EXPECTED.clear()
            print("refusal ok")

            # Leaving a room: out of the sidebar until joined again.
            expect(c.locator(f'#room-list [data-room="{secret["id"]}"]')).to_have_count(1)
            c.click(f'#room-list [data-room="{secret["id"]}"] .room-leave')
            expect(c.locator(f'#room-list [data-room="{secret["id"]}"]')).to_have_count(0)
            expect(c.locator("#view-title")).to_have_text("Welcome")
            c.reload()
            expect(c.locator("#app")).to_be_visible()
            c.wait_for_timeout(500)
            expect(c.locator(f'#room-list [data-room="{secret["id"]}"]')).to_have_count(0)
            join(c, room)
            c.click(f'#room-list [data-room="{room}"] .room-leave')
            expect(c.locator(f'#room-list [data-room="{room}"]')).to_have_count(0)
            join(c, room)
            expect(c.locator(f'#room-list [data-room="{room}"]')).to_have_count(1)
            print("leave ok")

            # Drafts are kept per room, across switching and a reload.
            join(a, room)
            a.fill("#composer", "a half-typed thought")
            a.dispatch_event("#composer", "input")
            join(a, other)
            expect(a.locator("#composer")).to_have_value("")
            a.click(f'#room-list [data-room="{room}"] .nav-btn')
            expect(a.locator("#composer")).to_have_value("a half-typed thought")
            a.reload()
            expect(a.locator("#connection-status")).to_have_text("connected")
            expect(a.locator("#composer")).to_have_value("a half-typed thought")
            shot(a, "draft-kept")
            a.fill("#composer", "")
            a.dispatch_event("#composer", "input")
            print("drafts ok")

            # A client that was away converges: bob edits, deletes and reacts
            # to messages alice already holds while she looks at another room;
            # when she comes back her socket recovers by id (?since=) and
            # shows each change, with no update event drawn as a message.
            sockets = []
            a.on("websocket", lambda ws: sockets.append(ws.url))
            say(b, f"conv one {tag}")
            say(b, f"conv two {tag}")
            say(b, f"conv three {tag}")
            expect(message(a, f"conv three {tag}")).to_be_visible()
            ids = {k: int(message(a, f"conv {k} {tag}").get_attribute("data-id")) for k in ("one", "two", "three")}
            join(a, other)
            done = b.evaluate(
                """async ([room, ids, tag]) => {
                    const token = localStorage.getItem('cbx.token');
                    const url = location.origin.replace(/^http/, 'ws') + '/chat/' + encodeURIComponent(room) + '?token=' + token;
                    const ws = new WebSocket(url);
                    const seen = [];
                    const events = [];
                    await new Promise((ok, fail) => {
                        setTimeout(() => fail(new Error('only saw ' + JSON.stringify(seen))), 8000);
                        ws.onerror = () => fail(new Error('socket'));
                        ws.onmessage = (e) => {
                            const f = JSON.parse(e.data);
                            if (f.type === 'history') {
                                ws.send(JSON.stringify({type: 'edit', message_id: ids.one, content: 'conv one fixed ' + tag}));
                                ws.send(JSON.stringify({type: 'delete', message_id: ids.two}));
                                ws.send(JSON.stringify({type: 'reaction', message_id: ids.three, emoji: '👍', op: 'add'}));
                                ws.send(JSON.stringify({type: 'message', content: 'conv four ' + tag, client_id: 'conv-' + tag}));
                            }
                            if (['edited', 'deleted', 'reaction', 'ack'].includes(f.type)) seen.push(f.type);
                            if (f.type !== 'ack' && seen.includes(f.type)) events.push(f.id);
                            if (seen.length === 4) { ws.close(); ok(); }
                        };
                    });
                    return [seen.sort(), events];
                }""",
                [room, ids, tag],
            )
            done, events = done
            assert done == ["ack", "deleted", "edited", "reaction"], done
            assert len(events) == 3 and all(isinstance(e, int) for e in events), events
            a.click(f'#room-list [data-room="{room}"] .nav-btn')
            expect(a.locator("#connection-status")).to_have_text("connected")
            fixed = message(a, f"conv one fixed {tag}")
            expect(fixed).to_be_visible()
            expect(fixed.locator(".edited")).to_be_visible()
            expect(a.locator(f'#messages .message[data-id="{ids["two"]}"] .content.tombstone')).to_be_visible()
            expect(message(a, f"conv three {tag}").locator('.reaction[data-emoji="👍"] .count')).to_have_text("1")
            expect(message(a, f"conv four {tag}")).to_be_visible()
            back = [u for u in sockets if f"/chat/{room}" in u]
            assert back and "since=" in back[-1] and "epoch=" in back[-1], back
            drawn = [int(x) for x in a.locator("#messages .message[data-id]").evaluate_all("els => els.map(e => e.dataset.id)")]
            assert not set(drawn) & set(events), (drawn, events)
            shot(a, "recovery-converged")
            print("recovery converges ok")

            # No mention toast for the room on screen: the message is the notice.
            say(a, "@bob look at this")
            expect(message(b, "look at this")).to_have_class(re.compile("mentions-me"))
            b.wait_for_timeout(800)
            expect(b.locator("#toasts .toast-mention")).to_have_count(0)
            print("no toast in the open room ok")

            # Coming back. Bob goes to another room, signs out (keeping his
            # identity), and alice writes a lot, mentioning him once.
            join(b, other)
            exp_before = token_exp(b)
            sign_out(b)
            expect(b.locator("#saved-guests")).to_be_visible()
            expect(b.locator(".saved-guest")).to_have_text("Continue as bob")
            shot(b, "continue-as")
            a.click(f'#room-list [data-room="{room}"] .nav-btn')
            for i in range(30):
                text = f"while you were away {i}" if i != 20 else "@bob while you were away, a question"
                a.fill("#composer", text)
                a.press("#composer", "Enter")
            expect(message(a, "while you were away 29")).to_be_visible()
            # He comes back as himself, lands where he was, and the room
            # where he was mentioned carries the badge.
            b.click(".saved-guest")
            expect(b.locator("#app")).to_be_visible()
            assert sub_of(b) == bob, "the same guest after signing in again"
            # Coming back renews the guest's token: same id, later expiry.
            b.wait_for_function("([exp]) => JSON.parse(atob(localStorage.getItem('cbx.token').split('.')[1].replace(/-/g,'+').replace(/_/g,'/'))).exp > exp", arg=[exp_before])
            assert sub_of(b) == bob
            expect(b.locator("#view-title")).to_contain_text(other)
            badge = b.locator(f'#room-list [data-room="{room}"] .mention-badge')
            expect(badge).to_have_text("@1")
            shot(b, "mention-badge")
            b.click(f'#room-list [data-room="{room}"] .nav-btn')
            line = b.locator("#unread-divider")
            expect(line).to_contain_text("30 new messages since you left · 1 mention of you")
            expect(line).to_be_in_viewport()
            expect(b.locator("#jump-latest")).to_be_visible()
            expect(badge).to_have_count(0)
            shot(b, "new-since-you-left")
            b.click("#jump-latest")
            expect(message(b, "while you were away 29")).to_be_in_viewport()
            expect(b.locator("#jump-latest")).to_be_hidden()
            shot(b, "jumped-to-latest")
            # Scrolling up brings the button back.
            b.locator("#messages").evaluate("(box) => { box.scrollTop = 0; }")
            expect(b.locator("#jump-latest")).to_be_visible()
            print("coming back ok")

            # The same name typed again is the same user too; "Forget me" forgets.
            sign_out(b)
            b.fill("#guest-name", "bob")
            b.click("#guest-login")
            expect(b.locator("#app")).to_be_visible()
            assert sub_of(b) == bob
            sign_out(b, forget=True)
            expect(b.locator("#saved-guests")).to_be_hidden()
            shot(b, "forgotten")
            assert sign_in(b, hub.url, "bob") not in (bob, other_bob), "forgotten means a new user"
            print("identity ok")

            # The hub stops: a connection problem, with a countdown and Retry now.
            harness.EXPECTED[:] = ["ERR_CONNECTION_REFUSED", "WebSocket connection"]
            hub.stop()
            notice = a.locator("#notice")
            expect(notice).to_contain_text("Cannot reach the hub")
            expect(notice).to_contain_text(re.compile(r"Retrying in \d+ s"))
            expect(a.locator("#retry-now")).to_be_visible()
            assert "not letting us" not in notice.inner_text()
            expect(a.locator("#online-count")).to_have_text("0 online")
            shot(a, "hub-stopped")
            hub.start()
            a.click("#retry-now")
            expect(a.locator("#connection-status")).to_have_text("connected")
            expect(notice).to_be_hidden()
            harness.EXPECTED.clear()
            shot(a, "hub-back")
            print("stopped hub ok")

            # A phone: the title and the connection pill fit in 390 px.
            ph = pages["phone"] = page_for(browser, problems, PHONE)
            sign_in(ph, hub.url, "dana")
            # The rooms are in the drawer on a phone.
            ph.click("#menu-toggle")
            join(ph, "design-review")
            expect(ph.locator(".sidebar")).to_be_hidden()
            fits = ph.evaluate(
                """() => {
                    const t = document.querySelector('#view-title');
                    const pill = document.querySelector('#connection-status').getBoundingClientRect();
                    return { title: t.scrollWidth <= t.clientWidth, pillRight: pill.right, width: innerWidth,
                             page: document.documentElement.scrollWidth };
                }"""
            )
            assert fits["title"], fits
            assert fits["pillRight"] <= fits["width"], fits
            assert fits["page"] <= fits["width"], fits
            shot(ph, "phone")
            no_violations(axe_check(ph, axe_source, "phone", out), "phone")
            ph.click("#menu-toggle")
            expect(ph.locator(".sidebar")).to_be_visible()
            shot(ph, "phone-sidebar")
            print("phone ok")

            # Keyboard only: sign in, join, write; the Tab order goes
            # sidebar, then the conversation, then the composer.
            k = pages["keyboard"] = page_for(browser, problems)
            k.goto(hub.url)
            k.keyboard.type("erin")
            k.keyboard.press("Enter")
            expect(k.locator("#room-input")).to_be_focused()
            k.keyboard.type(room)
            k.keyboard.press("Enter")
            expect(k.locator("#composer")).to_be_focused()
            k.keyboard.type("typed without a mouse")
            k.keyboard.press("Enter")
            expect(message(k, "typed without a mouse")).to_be_visible()
            k.locator("body").evaluate("(b) => { document.activeElement.blur(); }")
            order = []
            # Bounded: the message list is one stop plus the controls of
            # its active message (a roving tabindex), however many
            # messages the room holds (136 stops before it, in this room).
            for _ in range(40):
                k.keyboard.press("Tab")
                f = focused(k)
                order.append(f["id"] or f["cls"] or f["tag"])
                if f["id"] == "composer":
                    break
            assert "composer" in order, order
            assert order.index("sign-out") < order.index("room-input") < order.index("search-input") < order.index("composer"), order
            visible = k.evaluate("() => { const r = document.activeElement.getBoundingClientRect(); return r.width > 0 && r.height > 0; }")
            assert visible, order
            shot(k, "keyboard-only")
            print(f"keyboard ok ({len(order)} tab stops to the composer)")

            # The arrows walk the messages: Shift+Tab from the composer
            # reaches the active (newest) message's controls, then the message.
            k.locator("#composer").focus()
            ids = k.evaluate("() => Array.from(document.querySelectorAll('#messages .message[data-id]'), (n) => n.dataset.id)")
            assert len(ids) > 3, ids
            active = k.evaluate("() => Array.from(document.querySelectorAll('#messages .message[data-id][tabindex=\"0\"]'), (n) => n.dataset.id)")
            assert active == [ids[-1]], (active, ids[-1])
            k.locator(f'#messages .message[data-id="{ids[-1]}"]').focus()
            k.keyboard.press("ArrowUp")
            k.keyboard.press("ArrowUp")
            now = k.evaluate("() => document.activeElement.dataset.id")
            assert now == ids[-3], (now, ids[-3:])
            k.keyboard.press("Home")
            assert k.evaluate("() => document.activeElement.dataset.id") == ids[0]
            k.keyboard.press("End")
            assert k.evaluate("() => document.activeElement.dataset.id") == ids[-1]
            inside = "() => document.activeElement.closest('.message[data-id]')?.dataset.id"
            # Tab goes into the active message's own controls...
            k.keyboard.press("Tab")
            assert k.evaluate(inside) == ids[-1], (k.evaluate(inside), ids[-1])
            assert focused(k)["cls"] == "author", focused(k)
            k.keyboard.press("Shift+Tab")
            assert k.evaluate("() => document.activeElement.dataset.id") == ids[-1]
            # ...and once the arrows moved on, the newest one's are out of the order.
            k.keyboard.press("ArrowUp")
            k.keyboard.press("Tab")
            assert k.evaluate(inside) != ids[-1], (k.evaluate(inside), ids[-2:])
            shot(k, "keyboard-arrows")
            print("message list arrows ok")

            # A confirmation dialog passes axe too.
            mine = message(k, "typed without a mouse")
            mine.hover()
            mine.locator(".act-delete").click()
            expect(k.locator("#confirm-dialog")).to_be_visible()
            no_violations(axe_check(k, axe_source, "confirm", out), "confirm dialog")
            k.keyboard.press("Escape")
            assert not problems, problems
            print("console ok")
        except Exception:
            for name, page in pages.items():
                try:
                    shot(page, f"{name}-failure")
                except Exception:  # noqa: BLE001 - best effort on the way out
                    pass
            raise
        finally:
            browser.close()


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--hub", required=True, help="the hub binary")
    parser.add_argument("--axe", required=True, help="axe.min.js from the axe-core npm package")
    parser.add_argument("--out", default="target/browser")
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)
    with open(args.axe) as f:
        axe_source = f.read()
    started = time.monotonic()
    hub = Hub(args.hub, args.out)
    hub.start()
    try:
        run(hub, args.out, axe_source)
    finally:
        hub.stop()
    print(f"returning test passed in {time.monotonic() - started:.1f}s; screenshots in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
