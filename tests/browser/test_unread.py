"""Browser test of unread counts and DM attachments (issue 15 item 4).

Alice reads a room and moves to another; bob writes in the first: a count
badge appears live in alice's sidebar (its number in the link's accessible
name), and goes when she opens the room (the hub's count too). Bob sends
alice a DM: a badge on the conversation; then a picture in the DM, shown
with its name and preview once she opens it, readable by the two of them
and refused (403) to a third user. axe-core finds nothing in the sidebar
with badges. Screenshots go to target/browser/unread-NN-*.png.

    python tests/browser/test_unread.py --hub target/debug/examples/hub --axe axe.min.js

Run through tests/browser/run.sh, which builds the hub.
"""

import argparse
import random
import re
import sys
import time

from playwright.sync_api import expect, sync_playwright

from harness import EXPECTED, Hub, Shots, api, axe_check, join, launch, message, page_for, say, sign_in

# A 1x1 PNG.
PNG = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c6360f8cfc0f01f0005000201a5f2b1"
    "5d0000000049454e44ae426082"
)


def unread_until(page, check, what):
    """GET /unread from `page` until `check(body)` holds (10 s at most)."""
    deadline = time.monotonic() + 10
    while True:
        status, body = api(page, "GET", "/unread")
        assert status == 200, (status, body)
        if check(body):
            return body
        assert time.monotonic() < deadline, f"{what}: {body}"
        time.sleep(0.1)


def run(hub, out, axe_source):
    tag = f"{random.randrange(1 << 32):08x}"
    news, other = f"news-{tag}", f"other-{tag}"
    shot = Shots(out, "unread")
    with sync_playwright() as p:
        browser = launch(p)
        problems = []
        try:
            a = page_for(browser, problems)
            b = page_for(browser, problems)
            c = page_for(browser, problems)
            alice = sign_in(a, hub.url, "alice")
            bob = sign_in(b, hub.url, "bob")
            sign_in(c, hub.url, "carol")

            # Alice reads #news, then moves to #other.
            join(a, news)
            join(b, news)
            say(b, "first news")
            expect(message(a, "first news")).to_be_visible()
            unread_until(a, lambda body: body["rooms"].get(news) == 0, "alice has read #news")
            join(a, other)

            # Bob writes in #news: the badge appears live in alice's sidebar.
            say(b, "ping one")
            say(b, "ping two")
            link = a.locator(f'#room-list [data-room="{news}"] .nav-btn')
            # (Chromium puts a space between the flex items: "news , 2 unread".)
            expect(link).to_have_accessible_name(re.compile(rf"^{news}\s*, 2 unread$"))
            expect(link.locator(".unread-badge")).to_be_visible()
            # The open room does not count up, and it has no badge.
            expect(a.locator(f'#room-list [data-room="{other}"] .unread-badge')).to_have_count(0)
            body = unread_until(a, lambda body: body["rooms"].get(news) == 2, "the hub counts 2")
            assert body["rooms"].get(other, 0) == 0, body
            shot(a, "room-badge")
            if axe_source:
                found = axe_check(a, axe_source, "unread", out)
                assert not found, f"axe found problems with badges: {found}"
                print("axe unread: no violations")
            print("room badge ok")

            # Opening the room clears it, here and at the hub.
            link.click()
            expect(message(a, "ping two")).to_be_visible()
            expect(link.locator(".unread-badge")).to_have_count(0)
            unread_until(a, lambda body: body["rooms"].get(news) == 0, "read after opening")
            join(a, other)
            shot(a, "room-cleared")
            print("room cleared ok")

            # A DM from bob: a badge on the conversation.
            b.locator(f'#presence-list .user[data-user="{alice}"] .nav-btn').click()
            expect(b.locator("#composer")).to_be_enabled()
            b.fill("#composer", "private hello")
            b.press("#composer", "Enter")
            dm_link = a.locator(f'#dm-list [data-dm="{bob}"] .nav-btn')
            expect(dm_link).to_have_accessible_name(re.compile(r"\bbob\s*, 1 unread$"))
            expect(dm_link.locator(".unread-badge")).to_be_visible()
            unread_until(a, lambda body: body["dms"].get(bob) == 1, "the hub counts the DM")

            # ... and a picture in the DM (the paperclip is there in DMs).
            expect(b.locator("#attach")).to_be_visible()
            b.fill("#composer", "a picture for you")
            b.set_input_files("#file-input", files=[{"name": "dot.png", "mimeType": "image/png", "buffer": PNG}])
            expect(b.locator("#messages .message").filter(has_text="a picture for you").locator(".attachment-img")).to_be_visible()
            expect(dm_link).to_have_accessible_name(re.compile(r"\bbob\s*, 2 unread$"))
            shot(a, "dm-badge")
            print("dm badge ok")

            dm_link.click()
            sent = a.locator("#messages .message").filter(has_text="a picture for you")
            picture = sent.locator(".attachment-img")
            expect(picture).to_be_visible()
            expect(picture.locator(".file-name")).to_have_text("dot.png")
            expect(picture.locator(".file-details")).to_have_text(f"PNG image · {len(PNG)} B")
            a.wait_for_function(
                "() => { const i = document.querySelector('#messages .attachment-image'); return i && i.complete && i.naturalWidth > 0; }"
            )
            expect(dm_link.locator(".unread-badge")).to_have_count(0)
            unread_until(a, lambda body: body["dms"].get(bob) == 0, "the DM read")
            shot(a, "dm-attachment")

            # The file is the conversation's: the two parties read it, carol may not.
            file_id = picture.get_attribute("data-file")
            assert file_id, "the picture names its file"
            # Carol's browser logs the refusal itself: that is this step's doing.
            EXPECTED.append("status of 403 (Forbidden)")
            for page, want in ((a, 200), (b, 200), (c, 403)):
                status, _ = api(page, "GET", f"/files/{file_id}/meta")
                assert status == want, (status, want)
            print("dm attachment ok")
            assert not problems, problems
        finally:
            browser.close()


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--hub", required=True, help="the hub binary")
    parser.add_argument("--out", default="target/browser")
    parser.add_argument("--axe", help="axe.min.js (the accessibility check is skipped without it)")
    args = parser.parse_args()
    axe_source = open(args.axe).read() if args.axe else None
    hub = Hub(args.hub, args.out)
    hub.start()
    try:
        run(hub, args.out, axe_source)
    finally:
        hub.stop()
    print("unread browser test passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
