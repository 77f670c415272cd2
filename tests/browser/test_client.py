"""Browser test of the hub's web client: the everyday flow.

Two guests in two browser contexts sign in, join one room, see each other
on presence, see each other typing, chat, react (keyboard too), edit a
multi-line message, delete with a confirmation, upload a picture and a
file (names, sizes, types, downloads under the original name), reply in a
thread and search; switch rooms, visit a DM and reload without a join or
leave line, and leave a room with exactly one; then the room's owner mutes (with a duration), unmutes
and kicks from the menus, each asked about first. Screenshots of every
step go to target/browser/client-NN-*.png.

    python tests/browser/test_client.py --hub target/debug/examples/hub

Run through tests/browser/run.sh, which builds the hub.
"""

import argparse
import os
import random
import re
import sys
import time

from playwright.sync_api import expect, sync_playwright

from harness import Hub, Shots, api, focused, join, launch, message, page_for, say, sign_in

# A 1x1 PNG.
PNG = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c6360f8cfc0f01f0005000201a5f2b1"
    "5d0000000049454e44ae426082"
)
NOTES = b"minutes of the meeting\n"


def notice_lines(page, text=None):
    """Join and leave lines in the open room's list (only `text`, when given)."""
    pattern = re.escape(text) if text else r"(joined|left) the chat"
    return page.locator("#messages .message.system").filter(has_text=re.compile(pattern))


def notice_texts(page):
    return notice_lines(page).all_inner_texts()


def run(hub, out):
    room = f"browser-{random.randrange(1 << 32):08x}"
    shot = Shots(out, "client")
    with sync_playwright() as p:
        browser = launch(p)
        problems = []
        a = b = None
        try:
            a = page_for(browser, problems)
            b = page_for(browser, problems)
            alice = sign_in(a, hub.url, "alice")
            bob = sign_in(b, hub.url, "bob")
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
            shot(a, "presence")
            print("presence ok")

            # Typing: bob types, alice sees it.
            b.click("#composer")
            b.keyboard.type("hello from bob", delay=30)
            expect(a.locator("#typing")).to_contain_text("bob")
            shot(a, "typing")
            print("typing ok")

            # Chat both ways.
            b.click("#send")
            expect(message(a, "hello from bob")).to_be_visible()
            a.fill("#composer", "hi bob, alice here")
            a.click("#send")
            expect(message(b, "hi bob, alice here")).to_be_visible()
            shot(b, "chat")
            print("chat ok")

            # Alice reacts to bob's message; the picker takes the focus and
            # works from the keyboard; bob sees the reaction.
            theirs = message(a, "hello from bob")
            theirs.hover()
            theirs.locator(".act-react").click()
            expect(a.locator("#emoji-picker")).to_be_visible()
            assert "emoji-choice" in focused(a)["cls"], focused(a)
            a.keyboard.press("ArrowRight")
            assert focused(a)["label"] == "heart", focused(a)
            a.keyboard.press("ArrowLeft")
            shot(a, "emoji-picker-focused")
            a.keyboard.press("Enter")
            expect(message(b, "hello from bob").locator('.reaction[data-emoji="👍"]')).to_be_visible()
            expect(message(b, "hello from bob").locator('.reaction[data-emoji="👍"] .count')).to_have_text("1")
            # Esc on an open picker gives the focus back to the button that opened it.
            theirs.hover()
            theirs.locator(".act-react").click()
            a.keyboard.press("Escape")
            expect(a.locator("#emoji-picker")).to_be_hidden()
            assert focused(a)["label"] == "Add reaction", focused(a)
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

            # Editing keeps line breaks: Shift+Enter is a new line, Enter saves.
            b.fill("#composer", "first line")
            b.press("#composer", "Shift+Enter")
            b.keyboard.type("second line")
            b.press("#composer", "Enter")
            expect(message(a, "second line")).to_be_visible()
            b.click("#composer")
            b.press("#composer", "ArrowUp")
            edit = b.locator("#messages .edit-input")
            expect(edit).to_be_focused()
            assert edit.evaluate("(e) => e.tagName") == "TEXTAREA"
            assert edit.input_value() == "first line\nsecond line", edit.input_value()
            b.keyboard.press("End")
            b.keyboard.press("Shift+Enter")
            b.keyboard.type("third line")
            shot(b, "edit-multiline")
            b.keyboard.press("Enter")
            multi = message(a, "third line")
            expect(multi.locator(".edited")).to_be_visible()
            assert multi.locator(".content").inner_text() == "first line\nsecond line\nthird line", multi.locator(".content").inner_text()
            shot(a, "edited-multiline-seen")
            print("multi-line edit ok")

            # Deleting asks first, in a dialog the keyboard drives: Esc
            # cancels, Tab reaches Delete, Enter confirms.
            mine = message(b, "hello from bob (fixed)")
            msg_id = mine.get_attribute("data-id")
            mine.hover()
            mine.locator(".act-delete").click()
            dialog = b.locator("#confirm-dialog")
            expect(dialog).to_be_visible()
            assert dialog.get_attribute("role") == "alertdialog"
            expect(b.locator("#confirm-title")).to_have_text("Delete this message?")
            expect(b.locator("#confirm-cancel")).to_be_focused()
            shot(b, "delete-confirm")
            b.keyboard.press("Escape")
            expect(dialog).to_be_hidden()
            b.wait_for_timeout(300)
            expect(a.locator(f'#messages .message[data-id="{msg_id}"]')).to_contain_text("hello from bob (fixed)")
            mine.hover()
            mine.locator(".act-delete").click()
            expect(dialog).to_be_visible()
            b.keyboard.press("Tab")
            expect(b.locator("#confirm-ok")).to_be_focused()
            b.keyboard.press("Enter")
            expect(a.locator(f'#messages .message[data-id="{msg_id}"] .content.tombstone')).to_be_visible()
            expect(a.locator(f'#messages .message[data-id="{msg_id}"]')).not_to_contain_text("hello from bob")
            shot(a, "deleted")
            print("delete ok")

            # Files: a picture and a text file keep their names, sizes and
            # types for everyone; downloads carry the original name.
            a.fill("#composer", "a picture")
            a.set_input_files("#file-input", files=[{"name": "dot.png", "mimeType": "image/png", "buffer": PNG}])
            picture = message(b, "a picture").locator(".attachment-img")
            expect(picture).to_be_visible()
            expect(picture.locator(".file-name")).to_have_text("dot.png")
            expect(picture.locator(".file-details")).to_have_text(f"PNG image · {len(PNG)} B")
            assert picture.locator("img").get_attribute("alt") == "dot.png"
            href = picture.locator("img").get_attribute("src")
            assert href and href.startswith("/files/"), href
            resp = b.request.get(hub.url + href)
            assert resp.status == 200, resp.status
            assert resp.headers.get("content-type", "").startswith("image/png"), resp.headers
            assert resp.headers.get("content-disposition", "").startswith('inline; filename="dot.png"'), resp.headers
            assert resp.body() == PNG
            a.fill("#composer", "the notes")
            a.set_input_files("#file-input", files=[{"name": "Meeting notes.txt", "mimeType": "text/plain", "buffer": NOTES}])
            card = message(b, "the notes").locator(".attachment-file")
            expect(card.locator(".file-name")).to_have_text("Meeting notes.txt")
            expect(card.locator(".file-details")).to_have_text(f"text · {len(NOTES)} B")
            assert card.get_attribute("download") == "Meeting notes.txt"
            with b.expect_download() as download:
                card.click()
            assert download.value.suggested_filename == "Meeting notes.txt", download.value.suggested_filename
            resp = b.request.get(hub.url + card.get_attribute("href"))
            assert 'attachment; filename="Meeting notes.txt"' in resp.headers.get("content-disposition", ""), resp.headers
            assert resp.body() == NOTES
            shot(b, "files")
            # After a reload the names come from the hub, not from the uploader's memory.
            b.reload()
            expect(message(b, "the notes").locator(".attachment-file .file-name")).to_have_text("Meeting notes.txt")
            expect(message(b, "a picture").locator(".attachment-img .file-name")).to_have_text("dot.png")
            shot(b, "files-after-reload")
            print("files ok")

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
            shot(a, "thread")
            print("thread ok")

            # Search finds alice's message for bob, with its room; closing
            # the panel clears the field.
            b.fill("#search-input", "ALICE here")
            b.press("#search-input", "Enter")
            result = b.locator("#search-results .search-result").first
            expect(result).to_contain_text("hi bob, alice here")
            assert result.get_attribute("data-room") == room, result.get_attribute("data-room")
            shot(b, "search")
            b.click("#search-close")
            expect(b.locator("#search-panel")).to_be_hidden()
            expect(b.locator("#search-input")).to_have_value("")
            print("search ok")

            # Join/leave noise (issue 16): room switches, a DM visit and
            # reloads are not membership changes, so they write no lines;
            # "Leave room" writes exactly one.
            side = f"{room}-side"
            join(b, side)
            join(a, side)
            expect(notice_lines(b, "alice joined the chat")).to_have_count(1)
            before = notice_lines(b).count()
            for _ in range(3):
                join(a, room)
                join(a, side)
            a.click(f'#presence-list .user[data-user="{bob}"] .nav-btn')
            expect(a.locator("#view-title")).to_contain_text("bob")
            join(a, side)
            a.reload()
            expect(a.locator("#connection-status")).to_have_text("connected")
            expect(a.locator("#view-title")).to_contain_text(side)
            b.wait_for_timeout(500)
            assert notice_lines(b).count() == before, notice_texts(b)
            # Bob's own reload: the same lines, from history.
            b.reload()
            expect(b.locator("#connection-status")).to_have_text("connected")
            expect(b.locator("#view-title")).to_contain_text(side)
            expect(notice_lines(b, "alice joined the chat")).to_have_count(1)
            assert notice_lines(b).count() == before, notice_texts(b)
            # Alice sees no more lines than bob does.
            assert notice_lines(a).count() == before, notice_texts(a)
            shot(b, "no-join-leave-noise")
            # Alice leaves the room from the sidebar: one line for bob.
            a.locator(f'#room-list li[data-room="{side}"] .room-leave').click()
            expect(notice_lines(b, "alice left the chat")).to_have_count(1)
            expect(a.locator(f'#room-list li[data-room="{side}"]')).to_have_count(0)
            b.wait_for_timeout(500)
            assert notice_lines(b).count() == before + 1, notice_texts(b)
            shot(b, "left-one-line")
            # Back where the rest of the walk happens.
            join(a, room)
            join(b, room)
            print("no join/leave noise ok")

            # A direct message offers the paperclip too (DMs carry attachments;
            # sending one is in test_unread.py).
            b.click(f'#presence-list .user[data-user="{alice}"] .nav-btn')
            expect(b.locator("#view-title")).to_contain_text("alice")
            expect(b.locator("#attach")).to_be_visible()
            expect(b.locator("#attach")).to_be_enabled()
            shot(b, "dm-paperclip")
            join(b, room)
            expect(b.locator("#attach")).to_be_visible()
            print("dm paperclip ok")

            # Moderation from the menus, in a room alice owns.
            status, created = api(a, "POST", "/rooms", {"name": f"{room}-owned", "private": False, "members": []})
            assert status == 201, (status, created)
            owned = created["id"]
            join(a, owned)
            join(b, owned)
            say(b, "bob was here")
            a.reload()
            expect(a.locator("#connection-status")).to_have_text("connected")
            author = message(a, "bob was here").locator(".author")
            author.click()
            # The menu takes the focus (its first item), for keyboard users.
            expect(a.locator("#user-menu .menu-dm")).to_be_focused()
            a.click("#user-menu .menu-mute")
            expect(a.locator("#confirm-dialog")).to_be_visible()
            expect(a.locator("#confirm-select")).to_be_focused()
            assert a.locator("#confirm-select").input_value() == "600"
            a.select_option("#confirm-select", "300")
            shot(a, "mute-duration")
            a.click("#confirm-ok")
            line = b.locator("#messages .message.mod-action.action-mute").last
            expect(line).to_have_text(re.compile(r"bob was muted by alice for 5 minutes"))
            # The muted user's composer is off, with the reason and the time left.
            expect(b.locator("#composer")).to_be_disabled()
            expect(b.locator("#notice")).to_contain_text("You are muted in this room for 5 minutes more")
            assert "left" in b.locator("#composer").get_attribute("placeholder")
            shot(b, "muted")
            # Alice's line reads the same, with names rather than ids.
            expect(a.locator("#messages .message.mod-action.action-mute").last).to_contain_text("bob was muted by alice for 5 minutes")
            assert bob not in a.locator("#messages .message.mod-action").last.inner_text()
            print("mute ok")
            # A reload while muted still knows until when (from the saved notice).
            b.reload()
            expect(b.locator("#composer")).to_be_disabled()
            expect(b.locator("#notice")).to_contain_text("more")
            author.click()
            a.click("#user-menu .menu-unban")
            expect(b.locator("#messages .message.mod-action.action-unban").last).to_contain_text("bob was unbanned by alice")
            expect(b.locator("#composer")).to_be_enabled()
            expect(b.locator("#notice")).to_be_hidden()
            print("unmute ok")

            # Kick asks first; cancelling keeps bob in, confirming removes him.
            author.click()
            a.click("#user-menu .menu-kick")
            expect(a.locator("#confirm-title")).to_have_text("Kick bob?")
            shot(a, "kick-confirm")
            a.click("#confirm-cancel")
            a.wait_for_timeout(300)
            expect(b.locator("#connection-status")).to_have_text("connected")
            author.click()
            a.click("#user-menu .menu-kick")
            a.click("#confirm-ok")
            expect(b.locator("#connection-status")).to_have_text("kicked")
            b.wait_for_timeout(2500)  # past the client's first reconnect delay
            expect(b.locator("#connection-status")).to_have_text("kicked")
            expect(a.locator("#messages .message.mod-action.action-kick").last).to_contain_text("bob was kicked by alice")
            shot(b, "kicked")
            # Ban asks for how long.
            author.click()
            a.click("#user-menu .menu-ban")
            expect(a.locator("#confirm-title")).to_have_text("Ban bob?")
            a.select_option("#confirm-select", "3600")
            a.click("#confirm-ok")
            expect(a.locator("#messages .message.mod-action.action-ban").last).to_contain_text("bob was banned by alice for 1 hour")
            shot(a, "banned")
            print("kick and ban ok")

            # Bob leaves: alice sees him offline.
            b.context.close()
            b = None
            expect(a.locator(f'#presence-list .user[data-user="{bob}"]')).to_have_attribute("data-status", "offline")
            print("offline ok")
            shot(a, "after-bob-left")
            assert not problems, problems
            print("console ok")
        except Exception:
            for name, page in (("alice-failure", a), ("bob-failure", b)):
                try:
                    if page is not None:
                        shot(page, name)
                except Exception:  # noqa: BLE001 - best effort on the way out
                    pass
            raise
        finally:
            browser.close()


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--hub", required=True, help="the hub binary")
    parser.add_argument("--out", default="target/browser")
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)
    started = time.monotonic()
    hub = Hub(args.hub, args.out)
    hub.start()
    try:
        run(hub, args.out)
    finally:
        hub.stop()
    print(f"client test passed in {time.monotonic() - started:.1f}s; screenshots in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
