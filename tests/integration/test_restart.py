#!/usr/bin/python3
"""Restart survival: `kill -9` of the service leaves every VM running; the restarted
service reattaches them through QMP and the same links work again. A VM that died
while the service was away is cleaned up, and so is a run directory nobody owns."""
import os
import signal
import time

from qdesk import (LINUX_KEYCODE, RFB, Service, WebSocket, distinct_colours, eventually,
                   keysym, leftovers, process_gone, run_tests, test)

svc = None


def setup():
    global svc
    svc = Service(name="restart").start()


def qemu_pid(sid):
    with open(os.path.join(svc.state, "run", sid, "qemu.pid")) as f:
        return int(f.read())


@test
def kill_9_restart_reattach_and_the_link_still_works():
    s = svc.boot(memory_mb=256)
    token = s["url"].rsplit("/", 1)[1]
    ws = WebSocket(svc.port, f"/ws/{token}")
    RFB(ws).framebuffer()
    pid = qemu_pid(s["id"])
    svc.kill9()
    time.sleep(0.5)
    assert not process_gone(pid), "the VM died with the service"
    svc.start()
    assert "1 session reattached" in svc.log(), svc.log()[-2000:]
    again = svc.session(s["id"])
    assert again["state"] == "running" and again["url"] == s["url"]
    assert qemu_pid(s["id"]) == pid
    ws2 = WebSocket(svc.port, f"/ws/{token}")
    assert ws2.status == 101
    rfb = RFB(ws2)
    assert distinct_colours(rfb.framebuffer()) > 8
    rfb.key(keysym("r"))
    svc.wait_serial(s["id"], rf"^QDESK-KEY {LINUX_KEYCODE['r']}$", 10)
    # reattached VMs stop as gracefully as the others
    svc.api("DELETE", f"/api/v1/sessions/{s['id']}")
    svc.wait_state(s["id"], "stopped", 40)
    assert process_gone(pid)
    assert leftovers(svc.state) == []


@test
def vm_that_died_meanwhile_is_cleaned_up():
    s = svc.boot(memory_mb=256)
    pid = qemu_pid(s["id"])
    svc.kill9()
    os.kill(pid, signal.SIGKILL)
    eventually(lambda: process_gone(pid), 5, "QEMU to die")
    stray = os.path.join(svc.state, "run", "0000000000000000")
    os.makedirs(stray)
    svc.start()
    gone = svc.session(s["id"])
    assert gone["state"] == "failed" and "while the service was down" in gone["error"], gone
    assert leftovers(svc.state) == [], leftovers(svc.state)
    assert "0 sessions reattached" in svc.log()


@test
def a_used_one_shot_session_ends_at_restart():
    s = svc.boot(memory_mb=256, oneshot=True)
    token = s["url"].rsplit("/", 1)[1]
    ws = WebSocket(svc.port, f"/ws/{token}")
    RFB(ws).framebuffer()
    svc.kill9()
    svc.start()
    # its one viewer's connection died with the old service: the link is spent
    svc.wait_state(s["id"], "stopped", 40)
    assert WebSocket(svc.port, f"/ws/{token}").status == 404


if __name__ == "__main__":
    run_tests(lambda: svc and svc.close(), setup)
