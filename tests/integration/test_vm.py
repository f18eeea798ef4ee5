#!/usr/bin/python3
"""The VM engine with real QEMU and the demo guest: every image format boots to its
desktop, with SeaBIOS and with OVMF; `qdesk run` stops cleanly on Ctrl-C, goes on to
"quit" and SIGKILL when the guest or QEMU does not listen, stops when nobody reads its
console, notices a QEMU that was killed, refuses what is missing with a clear error,
and leaves nothing behind in its run directories."""
import json
import os
import pwd
import re
import select
import shutil
import signal
import sqlite3
import subprocess
import tempfile
import time

from qdesk import (MACHINES, QDESK, Service, drop_firewall_table, leftovers, png_pixels,
                   process_gone, run_tests, test, tmpdir)

WORK = tmpdir("qd-vm-")  # QEMU runs as qdesk-qemu: it must reach the files
CAT = os.path.join(WORK, "machines")
TABLE = f"qdt_vm_{os.getpid()}"  # the runs' firewall table, removed at the end
os.makedirs(CAT)
ISO = os.path.join(MACHINES, "demo.iso")
FORMATS = {"qcow2": "qcow2", "raw": "raw", "vmdk": "vmdk", "vdi": "vdi", "vhdx": "vhdx",
           "vhd": "vpc"}
for ext, fmt in FORMATS.items():
    subprocess.run(["qemu-img", "convert", "-O", fmt, ISO, os.path.join(CAT, f"demo.{ext}"
                    if ext == "qcow2" else f"demo-{ext}.{ext}")], check=True)
# The demo kernel with ACPI off: the guest never sees the power button, so a stop
# must go on to "quit".
with open(os.path.join(MACHINES, "demo-kernel.conf")) as f:
    APPEND = next(l.split("=", 1)[1].strip() for l in f if l.startswith("append"))
with open(os.path.join(CAT, "demo-noacpi.conf"), "w") as f:
    f.write("kernel = demo-kernel.vmlinux\ninitrd = demo-kernel.initrd\nmemory = 256M\n"
            f"append = {APPEND} acpi=off\n")
# The same disk again, booted with UEFI.
shutil.copy(os.path.join(CAT, "demo.qcow2"), os.path.join(CAT, "demo-uefi.qcow2"))
with open(os.path.join(CAT, "demo-uefi.conf"), "w") as f:
    f.write("description = the demo disk under OVMF\nfirmware = uefi\nmemory = 512M\n")
shutil.copy(ISO, os.path.join(CAT, "demo-live.iso"))  # a link out would be refused
for f in ("demo-kernel.vmlinux", "demo-kernel.initrd", "demo-kernel.conf"):
    shutil.copy(os.path.join(MACHINES, f), os.path.join(CAT, f))
with open(os.path.join(CAT, "demo.conf"), "w") as f:
    f.write("memory = 512M\n")


def config(extra="", grace="15s"):
    """A config with a state directory of its own; returns (path, state dir)."""
    d = tempfile.mkdtemp(prefix="run-", dir=WORK)
    os.chmod(d, 0o755)
    path = os.path.join(d, "qdesk.conf")
    with open(path, "w") as f:
        f.write(f"[paths]\nmachines = {CAT}\nstate = {d}/state\n"
                f"[usernet]\nfirewall_table = {TABLE}\n"
                f"[qemu]\nstop_grace_s = {grace}\n{extra}")
    return path, os.path.join(d, "state")


class Stream:
    """One output of a process, read line by line without blocking."""

    def __init__(self, pipe):
        self.pipe, self.lines, self.buf = pipe, [], ""

    def read(self, timeout):
        """Adds what arrives within timeout to lines; returns False at the end."""
        ready, _, _ = select.select([self.pipe.fileno()], [], [], timeout)
        if not ready:
            return True
        chunk = os.read(self.pipe.fileno(), 65536)
        self.buf += chunk.decode(errors="replace").replace("\r", "")
        *done, self.buf = self.buf.split("\n")
        self.lines += done
        return bool(chunk)

    def rest(self):
        """Reads to the end (the process has exited)."""
        while self.read(1):
            pass
        if self.buf:
            self.lines.append(self.buf)
            self.buf = ""


class Run:
    """`qdesk run MACHINE` in the foreground, its console (standard output) and its
    messages (standard error) read line by line."""

    def __init__(self, machine, *opts, extra="", grace="15s"):
        self.conf, self.state = config(extra, grace)
        self.proc = subprocess.Popen([QDESK, "-c", self.conf, "run", machine, *opts],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.started = time.monotonic()
        self.out, self.err = Stream(self.proc.stdout), Stream(self.proc.stderr)
        self.lines = self.out.lines

    def _wait(self, stream, pattern, timeout):
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout
        seen = 0
        while time.monotonic() < deadline:
            more = stream.read(0.1)
            for line in stream.lines[seen:]:
                if rx.search(line):
                    return time.monotonic() - self.started
            seen = len(stream.lines)
            if not more:
                break  # qdesk run ended
        self.err.read(0)
        raise AssertionError(f"no /{pattern}/ within {timeout}s; console tail: "
                             f"{self.lines[-10:]}; qdesk said: {self.err.lines}")

    def wait_line(self, pattern, timeout=30):
        """Reads the console until a line matches; returns the seconds since start."""
        return self._wait(self.out, pattern, timeout)

    def wait_message(self, pattern, timeout=30):
        """Reads qdesk's messages until a line matches."""
        return self._wait(self.err, pattern, timeout)

    def qemu_pid(self):
        rundir = os.path.join(self.state, "run", leftovers(self.state)[0])
        with open(os.path.join(rundir, "qemu.pid")) as f:
            return int(f.read())

    def finish(self, timeout=40):
        """Waits for qdesk run to end; returns its status and everything it said."""
        rc = self.proc.wait(timeout=timeout)
        if not self.proc.stdout.closed:
            self.out.rest()
        self.err.rest()
        return rc, "\n".join(self.err.lines)


def interrupt(r, pid):
    r.proc.send_signal(signal.SIGINT)


def run_and_stop(machine, *opts, grace="15s", extra="", stop=interrupt):
    """Boots machine with `qdesk run` to its desktop, has stop(run, QEMU's pid) look
    at it and stop it, and checks the clean end: status 0, no run directory and no
    QEMU left. Returns the run and what qdesk said."""
    r = Run(machine, "--lifetime", "5m", *opts, extra=extra, grace=grace)
    r.took = r.wait_line(r"^QDESK-DEMO-READY", 60)
    pid = r.qemu_pid()
    try:
        stop(r, pid)
        rc, err = r.finish()
    finally:
        if not process_gone(pid):
            os.kill(pid, signal.SIGKILL)
    assert rc == 0, f"qdesk run exited {rc}: {err}"
    assert leftovers(r.state) == [], f"left behind: {leftovers(r.state)}"
    assert process_gone(pid), f"QEMU (pid {pid}) still runs"
    return r, err


def rundir_of(r):
    return os.path.join(r.state, "run", leftovers(r.state)[0])


def boots_and_stops(machine, *opts, while_running=None):
    """Boots machine to its desktop, runs while_running(run directory) if given,
    presses Ctrl-C, and checks the clean end."""
    def stop(r, pid):
        if while_running:
            while_running(rundir_of(r))
        interrupt(r, pid)
    r, err = run_and_stop(machine, *opts, stop=stop)
    assert "QDESK-POWEROFF" in r.lines, "the guest was not asked to power off"
    assert "VNC socket:" in err and "run directory:" in err, err
    # TCG or KVM, and when TCG, why
    assert re.search(r"under KVM|qdesk: TCG, not KVM, because \S", err), err
    # a VM that takes no host devices needs no store: no state at all is left
    assert not os.path.exists(r.state), f"left behind: {os.listdir(r.state)}"
    print(f"# {machine}: desktop after {r.took:.1f}s")


@test
def qcow2_boots_to_desktop():
    boots_and_stops("demo")


@test
def raw_boots_to_desktop():
    boots_and_stops("demo-raw")


@test
def vmdk_boots_to_desktop():
    boots_and_stops("demo-vmdk")


@test
def vdi_boots_to_desktop():
    boots_and_stops("demo-vdi")


@test
def vhdx_boots_to_desktop():
    boots_and_stops("demo-vhdx")


@test
def vpc_boots_to_desktop():
    boots_and_stops("demo-vhd")


@test
def iso_boots_as_cdrom_with_data_disk():
    def data_disk_has_2_gib(rundir):
        out = subprocess.run(["qemu-img", "info", "-U", "--output=json",
                              os.path.join(rundir, "data.qcow2")],
                             capture_output=True, text=True, check=True).stdout
        info = json.loads(out)
        assert info["format"] == "qcow2" and info["virtual-size"] == 2 << 30, info
    boots_and_stops("demo-live", "--disk", "2", while_running=data_disk_has_2_gib)


@test
def uefi_boots_to_desktop():
    boots_and_stops("demo-uefi")


@test
def direct_kernel_boots_to_desktop():
    boots_and_stops("demo-kernel")


@test
def lifetime_ends_the_vm():
    r = Run("demo-kernel", "--lifetime", "8s", extra="[sessions]\nmin_lifetime_s = 5s\n")
    r.wait_line(r"^QDESK-DEMO-READY", 60)
    rc, err = r.finish(timeout=40)
    assert rc == 0 and "stopping the VM (its lifetime of 8s ended)" in err, err
    assert "QDESK-POWEROFF" in r.lines
    assert leftovers(r.state) == []


@test
def killed_qemu_is_noticed_and_cleaned():
    r = Run("demo-kernel", "--lifetime", "5m")
    r.wait_line(r"^QDESK-DEMO-READY", 60)
    pid = r.qemu_pid()
    os.kill(pid, signal.SIGKILL)
    rc, err = r.finish(timeout=20)
    assert rc == 1, f"a killed QEMU must fail the run, got {rc}"
    assert "killed by signal 9" in err, err
    assert leftovers(r.state) == [], leftovers(r.state)
    assert process_gone(pid)


@test
def run_claims_devices_in_the_store_and_gives_them_back():
    # USB devices go through the allocator, whose claims live in the service's store
    # (so a service never hands out what a run holds): the store stays, the run's
    # claims and files do not.
    r, err = run_and_stop("demo-kernel", "--usb", "usb-kbd")
    assert sorted(os.listdir(r.state)) == ["state.db"], os.listdir(r.state)
    db = sqlite3.connect(os.path.join(r.state, "state.db"))
    assert db.execute("SELECT COUNT(*) FROM allocations").fetchone()[0] == 0
    db.close()


@test
def run_stops_when_its_console_reader_goes_away():
    # `qdesk run demo | head`: once nobody reads the console, the VM is stopped and
    # cleaned up, rather than qdesk dying of SIGPIPE and leaving QEMU running.
    r, err = run_and_stop("demo-kernel", stop=lambda r, pid: r.proc.stdout.close())
    assert "stopping the VM (nobody reads its console: standard output was closed): " \
        "pressing the guest's power button" in err, err


@test
def run_quits_qemu_when_the_guest_ignores_the_power_button():
    r, err = run_and_stop("demo-noacpi", grace="2s",
                          stop=lambda r, pid: r.proc.send_signal(signal.SIGTERM))
    assert "stopping the VM (SIGTERM): pressing the guest's power button (it has 2s" \
        in err, err
    assert "the guest did not power off within 2s; quitting QEMU" in err, err
    assert "QDESK-POWEROFF" not in r.lines, "an acpi=off guest saw the power button"
    assert "killing QEMU" not in err, err


@test
def run_kills_a_qemu_that_does_not_answer():
    def freeze_and_stop(r, pid):
        os.kill(pid, signal.SIGSTOP)  # QEMU hears neither the power button nor "quit"
        r.proc.send_signal(signal.SIGTERM)
    r, err = run_and_stop("demo-kernel", grace="1s", stop=freeze_and_stop)
    assert "the guest did not power off within 1s; quitting QEMU" in err, err
    assert "QEMU did not quit within 5s; killing QEMU (SIGKILL)" in err, err


@test
def run_forced_by_a_second_ctrl_c():
    # The grace period is far longer than the test may take: only the second
    # Ctrl-C can end this run.
    def twice(r, pid):
        interrupt(r, pid)
        r.wait_message(r"stopping the VM \(SIGINT\): pressing the guest's power button")
        interrupt(r, pid)
    r, err = run_and_stop("demo-noacpi", grace="10m", stop=twice)
    assert "forcing the stop (SIGINT): quitting QEMU" in err, err
    assert "did not power off within" not in err, err


@test
def qemu_runs_as_the_configured_user():
    nobody = pwd.getpwnam("nobody")

    def check(r, pid):
        status = {l.split(":")[0]: l.split()[1:] for l in open(f"/proc/{pid}/status")}
        assert status["Uid"] == [str(nobody.pw_uid)] * 4, f"QEMU runs as {status['Uid']}"
        # with the user's groups (kvm, render, ...), not its primary group alone
        assert sorted(map(int, status["Groups"])) == \
            sorted(set(os.getgrouplist("nobody", nobody.pw_gid))), status["Groups"]
        assert os.stat(rundir_of(r)).st_uid == nobody.pw_uid
        assert os.stat(rundir_of(r)).st_mode & 0o777 == 0o700
        interrupt(r, pid)
    run_and_stop("demo-kernel", extra="qemu_user = nobody\n", stop=check)


def uid_of(pid):
    status = {l.split(":")[0]: l.split()[1:] for l in open(f"/proc/{pid}/status")}
    return int(status["Uid"][0]), [int(u) for u in status["Uid"]]


@test
def qemu_never_runs_as_root():
    # qdesk runs as root with [qemu] qemu_user empty: QEMU runs as qdesk-qemu
    qemu_user = pwd.getpwnam("qdesk-qemu")
    assert os.geteuid() == 0, "this test runs qdesk as root"

    def check(r, pid):
        _, uids = uid_of(pid)
        assert uids == [qemu_user.pw_uid] * 4, f"QEMU runs as {uids}, not qdesk-qemu"
        assert os.stat(rundir_of(r)).st_uid == qemu_user.pw_uid
        interrupt(r, pid)
    run_and_stop("demo-kernel", stop=check)


def without_qemu_user(*cmd):
    """Runs cmd where the account qdesk-qemu does not exist: in a mount namespace of
    its own whose /etc/passwd and /etc/group lack it."""
    d = tmpdir("qd-nouser-")
    try:
        for f in ("passwd", "group"):
            with open(f"/etc/{f}") as src, open(f"{d}/{f}", "w") as dst:
                dst.writelines(l for l in src if not l.startswith("qdesk-qemu:"))
        script = (f"mount --bind {d}/passwd /etc/passwd && "
                  f"mount --bind {d}/group /etc/group && exec \"$@\"")
        return subprocess.run(["unshare", "-m", "--propagation", "private", "sh", "-c",
                               script, "sh", *cmd], capture_output=True, text=True,
                              timeout=30)
    finally:
        shutil.rmtree(d, ignore_errors=True)


@test
def a_missing_qemu_user_is_refused_never_root():
    conf, state = config()
    want = ("[qemu] qemu_user is empty and qdesk runs as root, so QEMU would run as "
            "qdesk-qemu, but user 'qdesk-qemu' does not exist; create it with scripts/deps")
    r = without_qemu_user(QDESK, "-c", conf, "run", "demo-kernel")
    assert r.returncode == 1 and want in r.stderr, (r.returncode, r.stderr)
    r = without_qemu_user(QDESK, "-c", conf, "serve")
    assert r.returncode == 1 and want in r.stderr, (r.returncode, r.stderr)
    assert leftovers(state) == []
    # nor may it be configured to be root
    r = Run("demo-kernel", extra="qemu_user = root\n")
    rc, err = r.finish(timeout=20)
    assert rc == 1 and "'root' is root, and QEMU never runs as root" in err, err


@test
def qemu_that_fails_to_start_leaves_nothing():
    # /bin/false stands where QEMU should be: the overlay is made, then QEMU fails.
    r = Run("demo", extra="qemu_x86_64 = /bin/false\n")
    rc, err = r.finish(timeout=20)
    assert rc == 1 and "QEMU exited while starting" in err, err
    assert leftovers(r.state) == [], leftovers(r.state)


@test
def missing_pieces_get_clear_errors():
    # each names the configured path and the Debian package that brings the piece
    cases = [
        ("demo-uefi", "ovmf_code = /nonexistent/OVMF_CODE.fd\n",
         "/nonexistent/OVMF_CODE.fd ([qemu] ovmf_code) is missing (Debian package ovmf)"),
        ("demo-uefi", "ovmf_vars = /nonexistent/OVMF_VARS.fd\n",
         "/nonexistent/OVMF_VARS.fd ([qemu] ovmf_vars) is missing (Debian package ovmf)"),
        ("demo", "qemu_img = /nonexistent/qemu-img\n",
         "qemu-img at /nonexistent/qemu-img is not installed (Debian package qemu-utils)"),
        ("demo", "qemu_x86_64 = /nonexistent/qemu-system-x86_64\n",
         "/nonexistent/qemu-system-x86_64 ([qemu] qemu_x86_64) is missing "
         "(Debian package qemu-system-x86)"),
    ]
    for machine, extra, want in cases:
        r = Run(machine, extra=extra)
        rc, err = r.finish(timeout=20)
        assert rc == 1 and want in err, f"{extra.strip()}: rc {rc}: {err}"
        assert leftovers(r.state) == []
    r = Run("no-such-machine")
    rc, err = r.finish(timeout=20)
    assert rc == 1 and "machine: 'no-such-machine' is not in the catalogue" in err, err
    # an image that vanished from the catalogue is reported by path
    os.symlink("/nonexistent/gone.qcow2", os.path.join(CAT, "gone.qcow2"))
    try:
        out = subprocess.run([QDESK, "--machines", CAT, "machines"], capture_output=True,
                             text=True)
        assert "refused: gone:" in out.stderr and "gone.qcow2" in out.stderr and \
            "No such file" in out.stderr, out.stderr
    finally:
        os.unlink(os.path.join(CAT, "gone.qcow2"))


@test
def bad_options_name_the_field():
    cores = os.cpu_count()
    cases = [(["--cpus", "999"], f"--cpus: 999 is more than this host's {cores} cores "
              f"(allowed 1..{cores})"),
             (["--cpus", "0"], f"--cpus: 0 is out of range (allowed 1..{cores})"),
             (["--memory", "12X"], "--memory: '12X' must be a size"),
             (["--lifetime", "90"], "--lifetime: '90' must be a duration"),
             (["--lifetime", "30d"], "--lifetime: 30d is out of range (allowed 1m..7d)"),
             (["--memory", "64M"], "--memory: 64 MiB is out of range (allowed 128..")]
    for opts, want in cases:
        r = Run("demo", *opts)
        rc, err = r.finish(timeout=20)
        assert rc in (1, 2) and want in err, f"{opts}: {err}"
        assert leftovers(r.state) == []


@test
def screendump_through_qmp_is_the_desktop():
    svc = Service(machines=CAT, name="shot").start()
    try:
        s = svc.boot(machine="demo-kernel")
        time.sleep(0.5)
        status, _, png = svc.request("GET", f"/api/v1/sessions/{s['id']}/screenshot")
        assert status == 200, png
        width, height, bpp, rows = png_pixels(png)
        assert width >= 640 and height >= 480, (width, height)
        flat = b"".join(rows)
        colours = len({flat[i:i + 3] for i in range(0, len(flat) - 3, bpp * 101)})
        assert colours > 8, f"the screenshot is nearly blank ({colours} colours)"
        os.makedirs(os.path.join(os.path.dirname(MACHINES), "tests", "artifacts"),
                    exist_ok=True)
        with open(os.path.join(os.path.dirname(MACHINES), "tests", "artifacts",
                               "demo-screendump.png"), "wb") as f:
            f.write(png)
    finally:
        svc.close()


def teardown():
    drop_firewall_table(TABLE)
    shutil.rmtree(WORK, ignore_errors=True)


if __name__ == "__main__":
    run_tests(teardown)
