#!/usr/bin/python3
"""The display proxy with an RFB client written for the tests, through the real
service to the demo guest: input through the control link reaches the guest; the
view-only link shows the desktop but its input never arrives; a one-shot link
admits one viewer and the session ends when it leaves; a malformed frame or RFB
message closes only the viewer that sent it."""
import http.client
import socket
import struct
import time

from qdesk import (LINUX_KEYCODE, RFB, Service, WebSocket, distinct_colours, eventually,
                   keysym, run_tests, test)

svc = SID = CONTROL = VIEW = None


def setup():
    """One service and one demo desktop that every test shares."""
    global svc, SID, CONTROL, VIEW
    svc = Service(name="proxy").start()
    demo = svc.boot(memory_mb=256)
    SID = demo["id"]
    CONTROL = demo["url"].rsplit("/", 1)[1]
    VIEW = demo["view_url"].rsplit("/", 1)[1]


def viewer(token):
    ws = WebSocket(svc.port, f"/ws/{token}")
    assert ws.status == 101, f"/ws/{token[:6]}…: HTTP {ws.status}"
    assert ws.headers.get("sec-websocket-protocol") == "binary"
    return ws, RFB(ws)


def keys_seen(code):
    return svc.serial(SID).count(f"QDESK-KEY {code}\n")


@test
def control_link_shows_the_desktop_and_types():
    ws, rfb = viewer(CONTROL)
    assert rfb.width >= 640 and rfb.height >= 480
    pixels = rfb.framebuffer()
    assert distinct_colours(pixels) > 8, "the desktop is blank"
    before = keys_seen(LINUX_KEYCODE["a"])
    rfb.key(keysym("a"))
    eventually(lambda: keys_seen(LINUX_KEYCODE["a"]) > before, 10, "QDESK-KEY 30")
    rfb.click(rfb.width // 2, rfb.height // 3)
    line = svc.wait_serial(SID, r"^QDESK-BUTTON 1 \d+ \d+$", 10)
    _, _, x, y = line.split()
    # the guest's pointer is where we clicked (tablet coordinates, scaled)
    assert abs(int(x) - rfb.width // 2) <= 2 and abs(int(y) - rfb.height // 3) <= 2, line
    ws.close()


@test
def view_only_link_never_sends_input():
    ws, rfb = viewer(VIEW)
    assert distinct_colours(rfb.framebuffer()) > 8, "the view-only viewer sees no desktop"
    b_before, buttons_before = keys_seen(LINUX_KEYCODE["b"]), svc.serial(SID).count("QDESK-BUTTON")
    rfb.key(keysym("b"))
    rfb.click(10, 10)
    # QEMU's extended key event is input too, and would type "b"; ClientCutText and
    # SetDesktopSize leave no trace this guest reports (tests/unit/test_rfb.c shows
    # they are dropped): here they must not disturb the stream
    ws.send(struct.pack(">BBHII", 255, 0, 1, keysym("b"), 48))  # down, XT scancode 48
    ws.send(struct.pack(">BBHII", 255, 0, 0, keysym("b"), 48))  # up
    ws.send(struct.pack(">BxxxI", 6, 5) + b"hello")
    ws.send(struct.pack(">BxHHBx", 251, 800, 600, 1) + struct.pack(">IHHHHI", 0, 0, 0, 800,
                                                                     600, 0))
    # the stream stays usable afterwards: the proxy dropped, not garbled, them
    assert distinct_colours(rfb.framebuffer()) > 8
    # a control viewer's key after them arrives: everything before had its chance
    cws, crfb = viewer(CONTROL)
    crfb.key(keysym("c"))
    svc.wait_serial(SID, rf"^QDESK-KEY {LINUX_KEYCODE['c']}$", 10)
    time.sleep(1)
    assert keys_seen(LINUX_KEYCODE["b"]) == b_before, "a view-only key reached the guest"
    assert svc.serial(SID).count("QDESK-BUTTON") == buttons_before, \
        "a view-only click reached the guest"
    status, info = svc.api("GET", f"/s/{VIEW}/info")
    assert info["view_only"] is True and info["state"] == "running"
    ws.close()
    cws.close()


@test
def malformed_frame_closes_only_that_viewer():
    bad_ws, _ = viewer(CONTROL)
    good_ws, good = viewer(CONTROL)
    bad_ws.send_frame(0x2, b"\x03\x00", mask=False)  # clients must mask
    code, _ = bad_ws.wait_closed()
    assert code == 1002, f"an unmasked frame should close with 1002, got {code}"
    before = keys_seen(LINUX_KEYCODE["d"])
    good.key(keysym("d"))
    eventually(lambda: keys_seen(LINUX_KEYCODE["d"]) > before, 10, "the other viewer's key")
    assert distinct_colours(good.framebuffer()) > 8
    good_ws.close()


@test
def malformed_rfb_message_closes_only_that_viewer():
    bad_ws, _ = viewer(VIEW)
    good_ws, good = viewer(CONTROL)
    bad_ws.send(b"\x4d" + b"\x00" * 7)  # message type 77 does not exist
    code, _ = bad_ws.wait_closed()
    assert code is not None and code >= 1002, f"an unknown RFB message gave {code}"
    before = keys_seen(LINUX_KEYCODE["e"])
    good.key(keysym("e"))
    eventually(lambda: keys_seen(LINUX_KEYCODE["e"]) > before, 10, "the other viewer's key")
    good_ws.close()


@test
def unknown_tokens_open_nothing():
    fake = "A" * 43
    assert WebSocket(svc.port, f"/ws/{fake}").status == 404
    assert svc.api("GET", f"/s/{fake}/info")[0] == 404
    assert svc.get(f"/s/{fake}/qr.svg")[0] == 404
    assert svc.get("/ws/short")[0] == 404
    # a plain GET on the WebSocket address is refused
    assert svc.get(f"/ws/{CONTROL}")[0] == 400


@test
def one_shot_link_admits_one_viewer_and_ends_with_it():
    s = svc.create(oneshot=True, memory_mb=256)
    svc.wait_serial(s["id"], r"^QDESK-DEMO-READY", 60)
    token = s["url"].rsplit("/", 1)[1]
    # a request that cannot become a WebSocket (HTTP/1.0) is refused and uses nothing
    with socket.create_connection(("127.0.0.1", svc.port), timeout=10) as raw:
        raw.sendall(f"GET /ws/{token} HTTP/1.0\r\nUpgrade: websocket\r\n"
                    "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                    "Sec-WebSocket-Version: 13\r\n\r\n".encode())
        answer = raw.recv(4096)
    assert b" 400 " in answer.split(b"\r\n")[0] and b"needs HTTP/1.1" in answer, answer
    status, info = svc.api("GET", f"/s/{token}/info")
    assert info["used"] is False and info["state"] == "running", info
    ws, rfb = viewer(token)
    assert distinct_colours(rfb.framebuffer()) > 8
    second = WebSocket(svc.port, f"/ws/{token}")
    assert second.status == 403, f"a second viewer of a one-shot link got {second.status}"
    status, info = svc.api("GET", f"/s/{token}/info")
    assert info["oneshot"] and info["used"]
    ws.close()
    svc.wait_state(s["id"], "stopped", 40)
    status, info = svc.api("GET", f"/s/{token}/info")
    assert status == 200 and info["state"] == "stopped" and info["ended_at"], (status, info)


@test
def stopping_a_session_closes_its_viewers():
    s = svc.create(memory_mb=256)
    svc.wait_serial(s["id"], r"^QDESK-DEMO-READY", 60)
    ws, rfb = viewer(s["url"].rsplit("/", 1)[1])
    rfb.framebuffer()
    svc.api("DELETE", f"/api/v1/sessions/{s['id']}")
    code, reason = ws.wait_closed(15)
    assert code == 1001, f"expected 1001 (going away), got {code} {reason}"
    status, metrics = svc.get("/metrics")
    assert b'qdesk_proxy_bytes_total{direction="to_browser"}' in metrics


@test
def tls_serves_https_and_wss():
    tls = Service(name="tls", tls=True).start()
    try:
        # the API over HTTPS gives https links; plain HTTP on that port gets nowhere
        s = tls.boot(memory_mb=256)
        assert s["url"].startswith(f"https://127.0.0.1:{tls.port}/s/"), s
        try:
            plain = http.client.HTTPConnection("127.0.0.1", tls.port, timeout=5)
            plain.request("GET", "/healthz")
            assert plain.getresponse().status != 200
        except (OSError, http.client.HTTPException):
            pass  # refused outright: fine
        ws = WebSocket(tls.port, "/ws/" + s["url"].rsplit("/", 1)[1], tls=True)
        assert ws.status == 101
        rfb = RFB(ws)
        assert distinct_colours(rfb.framebuffer()) > 8
        rfb.key(keysym("t"))
        tls.wait_serial(s["id"], rf"^QDESK-KEY {LINUX_KEYCODE['t']}$", 10)
        ws.close()
    finally:
        tls.close()


if __name__ == "__main__":
    run_tests(lambda: svc and svc.close(), setup)
