#!/usr/bin/python3
"""The default guest network (net = user: passt, and the firewall for the QEMU user):
a real guest reaches a host "outside" (a network namespace behind a veth pair) but
neither the portal nor a service on the host's loopback, not through the gateway
address (QEMU's slirp made it the host's 127.0.0.1) and not through any address the
host holds. passt runs as qdesk-qemu, never root, dies with its session, survives a
restart of the service with its QEMU, and is killed when reconcile finds its QEMU
gone."""
import os
import pwd
import shutil
import signal
import socket
import sqlite3
import subprocess
import threading
import time

from qdesk import (MACHINES, Pool, eventually, leftovers, process_gone, run_tests,
                   tmpdir)

pool = Pool()
TAG = os.getpid() % 100000
NS, VETH_HOST, VETH_NS = f"qdo{TAG}", f"qdoh{TAG}", f"qdon{TAG}"
# the outside host's little network, from the benchmarking range (RFC 2544)
HOST_SIDE, OUTSIDE = f"198.19.{TAG % 250}.1", f"198.19.{TAG % 250}.2"


def sh(*cmd):
    subprocess.run(cmd, check=True, capture_output=True)


def setup():
    sh("ip", "netns", "add", NS)
    sh("ip", "link", "add", VETH_HOST, "type", "veth", "peer", "name", VETH_NS)
    sh("ip", "link", "set", VETH_NS, "netns", NS)
    sh("ip", "addr", "add", f"{HOST_SIDE}/30", "dev", VETH_HOST)
    sh("ip", "link", "set", VETH_HOST, "up")
    sh("ip", "netns", "exec", NS, "ip", "addr", "add", f"{OUTSIDE}/30", "dev", VETH_NS)
    sh("ip", "netns", "exec", NS, "ip", "link", "set", VETH_NS, "up")
    sh("ip", "netns", "exec", NS, "ip", "link", "set", "lo", "up")


def teardown():
    subprocess.run(["ip", "link", "del", VETH_HOST], capture_output=True)
    subprocess.run(["ip", "netns", "del", NS], capture_output=True)


class Listener:
    """A TCP listener that counts the connections it accepts."""

    def __init__(self, addr):
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((addr, 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.accepted = 0
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.accepted += 1
            conn.close()


def outside_listener():
    """A listener on the outside host; returns (process, port)."""
    port = 20000 + TAG % 20000
    proc = subprocess.Popen(
        ["ip", "netns", "exec", NS, "/usr/bin/python3", "-c",
         "import socket,sys\ns=socket.socket()\n"
         "s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
         f"s.bind(('{OUTSIDE}', {port}))\ns.listen(8)\nprint('up', flush=True)\n"
         "while True: s.accept()[0].close()\n"],
        stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "up"
    return proc, port


def host_address():
    """The host's own address towards the outside world (its LAN address), if any."""
    r = subprocess.run(["ip", "-4", "route", "get", "192.0.2.254"], capture_output=True,
                       text=True)
    words = r.stdout.split()
    return words[words.index("src") + 1] if "src" in words else None


def catalogue(probes):
    """A catalogue with the demo kernel whose guest probes the targets."""
    cat = tmpdir("qd-ncat-")
    for f in ("demo-kernel.vmlinux", "demo-kernel.initrd"):
        shutil.copy(os.path.join(MACHINES, f), os.path.join(cat, f))
    with open(os.path.join(MACHINES, "demo-kernel.conf")) as f:
        conf = f.read()
    append = next(l for l in conf.splitlines() if l.startswith("append"))
    with open(os.path.join(cat, "demo-kernel.conf"), "w") as f:
        f.write(conf.replace(append, f"{append} qdesk.probe={','.join(probes)}"))
    return cat


def probe_results(svc, sid, targets):
    """The guest's verdict for each target (it configures its NIC by DHCP first)."""
    svc.wait_serial(sid, r"^QDESK-NET eth0 10\.0\.2\.15/24 via 10\.0\.2\.2$", 60)
    for t in targets:
        svc.wait_serial(sid, rf"^QDESK-PROBE {t} ", 30)
    lines = [l.split() for l in svc.serial(sid).splitlines() if l.startswith("QDESK-PROBE")]
    return {l[1]: l[2] for l in lines}


def stored(svc, sid):
    db = sqlite3.connect(os.path.join(svc.state, "state.db"))
    try:
        return db.execute("SELECT pid, net_pid FROM sessions WHERE id = ?", (sid,)).fetchone()
    finally:
        db.close()


def uid_of(pid):
    with open(f"/proc/{pid}/status") as f:
        return [int(u) for u in next(l for l in f if l.startswith("Uid:")).split()[1:]]


@pool.test
def guests_reach_the_outside_but_never_the_host():
    loopback = Listener("127.0.0.1")       # any loopback service of the host
    anywhere = Listener("0.0.0.0")         # a service on every host address
    outside, outside_port = outside_listener()
    try:
        lan = host_address()
        svc = pool.service(start=False, name="net")
        portal_port = svc.port
        targets = {
            f"tcp:10.0.2.2:{portal_port}": "the portal through the gateway address",
            f"tcp:10.0.2.2:{loopback.port}": "a loopback service through the gateway",
            f"tcp:{HOST_SIDE}:{portal_port}": "the portal on the host's veth address",
            f"tcp:{HOST_SIDE}:{anywhere.port}": "a host service on its veth address",
            f"tcp:{OUTSIDE}:{outside_port}": "the outside host",
        }
        if lan:
            targets[f"tcp:{lan}:{portal_port}"] = "the portal on the host's LAN address"
            targets[f"tcp:{lan}:{anywhere.port}"] = "a host service on its LAN address"
        cat = catalogue(targets)
        # the portal listens on every address of the host
        with open(svc.conf) as f:
            conf = f.read().replace(f"listen = 127.0.0.1:{portal_port}",
                                    f"listen = 0.0.0.0:{portal_port}")
        with open(svc.conf, "w") as f:
            f.write(conf.replace(f"machines = {MACHINES}", f"machines = {cat}") +
                    "[auth]\nallow_remote_none = true\n")
        svc.start()
        s = svc.create(memory_mb=256)
        got = probe_results(svc, s["id"], targets)
        assert got.get(f"tcp:{OUTSIDE}:{outside_port}") == "open", got
        for target, what in targets.items():
            if OUTSIDE not in target:
                assert got.get(target) != "open", f"the guest reached {what}: {got}"
        assert loopback.accepted == 0 and anywhere.accepted == 0, "a host listener saw " \
            "the guest"
        # the helper runs as QEMU's own user, never root
        qemu_pid, net_pid = stored(svc, s["id"])
        qemu_user = pwd.getpwnam("qdesk-qemu").pw_uid
        assert net_pid > 0 and uid_of(net_pid) == [qemu_user] * 4, uid_of(net_pid)
        assert uid_of(qemu_pid) == [qemu_user] * 4
        svc.api("DELETE", f"/api/v1/sessions/{s['id']}")
        svc.wait_state(s["id"], "stopped", 40)
        eventually(lambda: process_gone(net_pid), 5, "passt to end with its session")
        shutil.rmtree(cat, ignore_errors=True)
    finally:
        outside.kill()
        outside.wait()


@pool.test
def the_helper_survives_a_restart_and_dies_with_its_vm():
    svc = pool.service(name="netr")
    s = svc.boot(memory_mb=256)
    qemu_pid, net_pid = stored(svc, s["id"])
    assert net_pid > 0
    svc.kill9()
    time.sleep(0.5)
    assert not process_gone(net_pid), "passt died with the service"
    svc.start()
    assert "1 session reattached" in svc.log()
    assert stored(svc, s["id"]) == (qemu_pid, net_pid)
    # the guest is still online through the same passt
    assert svc.session(s["id"])["state"] == "running"

    # QEMU and the service die; passt is frozen, so it cannot notice by itself:
    # reconcile kills it
    svc.kill9()
    os.kill(net_pid, signal.SIGSTOP)
    os.kill(qemu_pid, signal.SIGKILL)
    eventually(lambda: process_gone(qemu_pid), 5, "QEMU to die")
    assert not process_gone(net_pid)
    svc.start()
    assert svc.session(s["id"])["state"] == "failed"
    eventually(lambda: process_gone(net_pid), 5, "reconcile to kill the orphaned passt")
    assert leftovers(svc.state) == []


@pool.test
def a_helper_that_dies_leaves_a_warning():
    svc = pool.service(name="netd")
    s = svc.boot(memory_mb=256)
    _, net_pid = stored(svc, s["id"])
    os.kill(net_pid, signal.SIGKILL)
    got = eventually(lambda: svc.session(s["id"]).get("warning"), 10, "a warning")
    assert "the network helper (passt) exited" in got and "no network" in got, got
    assert svc.session(s["id"])["state"] == "running"
    assert stored(svc, s["id"])[1] == 0


if __name__ == "__main__":
    run_tests(lambda: (pool.close(), teardown()), setup)
