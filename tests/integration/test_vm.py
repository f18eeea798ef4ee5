#!/usr/bin/python3
"""The VM engine with real QEMU and the demo guest: every image format boots to its
desktop, with SeaBIOS and with OVMF; `qdesk run` stops cleanly on Ctrl-C, notices a
QEMU that was killed, refuses what is missing with a clear error, and leaves
nothing behind in its run directories."""
import os
import pwd
import re
import select
import shutil
import signal
import subprocess
import tempfile
import time

from qdesk import (MACHINES, QDESK, Service, leftovers, png_pixels, process_gone, run_tests,
                   test)

WORK = tempfile.mkdtemp(prefix="qd-vm-", dir="/tmp")
os.chmod(WORK, 0o755)  # QEMU may run as another user: it must reach the files
CAT = os.path.join(WORK, "machines")
os.makedirs(CAT)
ISO = os.path.join(MACHINES, "demo.iso")
FORMATS = {"qcow2": "qcow2", "raw": "raw", "vmdk": "vmdk", "vdi": "vdi", "vhdx": "vhdx",
           "vhd": "vpc"}
for ext, fmt in FORMATS.items():
    subprocess.run(["qemu-img", "convert", "-O", fmt, ISO, os.path.join(CAT, f"demo.{ext}"
                    if ext == "qcow2" else f"demo-{ext}.{ext}")], check=True)
# The same disk again, booted with UEFI.
shutil.copy(os.path.join(CAT, "demo.qcow2"), os.path.join(CAT, "demo-uefi.qcow2"))
with open(os.path.join(CAT, "demo-uefi.conf"), "w") as f:
    f.write("description = the demo disk under OVMF\nfirmware = uefi\nmemory = 512M\n")
shutil.copy(ISO, os.path.join(CAT, "demo-live.iso"))  # a link out would be refused
for f in ("demo-kernel.vmlinux", "demo-kernel.initrd", "demo-kernel.conf"):
    shutil.copy(os.path.join(MACHINES, f), os.path.join(CAT, f))
with open(os.path.join(CAT, "demo.conf"), "w") as f:
    f.write("memory = 512M\n")


def config(extra=""):
    """A config with a state directory of its own; returns (path, state dir)."""
    d = tempfile.mkdtemp(prefix="run-", dir=WORK)
    os.chmod(d, 0o755)
    path = os.path.join(d, "qdesk.conf")
    with open(path, "w") as f:
        f.write(f"[paths]\nmachines = {CAT}\nstate = {d}/state\n"
                f"[qemu]\nstop_grace_s = 15s\n{extra}")
    return path, os.path.join(d, "state")


class Run:
    """`qdesk run MACHINE` in the foreground, its console read line by line."""

    def __init__(self, machine, *opts, extra=""):
        self.conf, self.state = config(extra)
        self.proc = subprocess.Popen([QDESK, "-c", self.conf, "run", machine, *opts],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.started = time.monotonic()
        self.lines = []
        self.buf = ""

    def wait_line(self, pattern, timeout=30):
        """Reads the console until a line matches; returns the seconds since start."""
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout
        fd = self.proc.stdout.fileno()
        while time.monotonic() < deadline:
            ready, _, _ = select.select([fd], [], [], 0.1)
            chunk = os.read(fd, 65536) if ready else b""
            if ready and not chunk:
                self.proc.wait(timeout=10)  # qdesk run ended
                break
            self.buf += chunk.decode(errors="replace").replace("\r", "")
            *done, self.buf = self.buf.split("\n")
            for line in done:
                self.lines.append(line)
                if rx.search(line):
                    return time.monotonic() - self.started
        err = ""
        if self.proc.poll() is not None:
            err = self.proc.stderr.read().decode(errors="replace")
        raise AssertionError(f"no /{pattern}/ within {timeout}s; console tail: "
                             f"{self.lines[-10:]}; qdesk said: {err}")

    def finish(self, timeout=40):
        rc = self.proc.wait(timeout=timeout)
        rest = self.buf + self.proc.stdout.read().decode(errors="replace")
        self.lines += rest.splitlines()
        return rc, self.proc.stderr.read().decode(errors="replace")


def boots_and_stops(machine, *opts):
    """Boots machine to its desktop, presses Ctrl-C, and checks the clean end."""
    r = Run(machine, "--lifetime", "5m", *opts)
    took = r.wait_line(r"^QDESK-DEMO-READY", 60)
    assert leftovers(r.state), "a running VM has a run directory"
    r.proc.send_signal(signal.SIGINT)
    rc, err = r.finish()
    assert rc == 0, f"qdesk run exited {rc}: {err}"
    assert "QDESK-POWEROFF" in r.lines, "the guest was not asked to power off"
    assert "VNC socket:" in err and "run directory:" in err, err
    assert leftovers(r.state) == [], f"left behind: {leftovers(r.state)}"
    print(f"# {machine}: desktop after {took:.1f}s")


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
    boots_and_stops("demo-live", "--disk", "2")


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
    assert rc == 0 and "its lifetime ended" in err, err
    assert "QDESK-POWEROFF" in r.lines
    assert leftovers(r.state) == []


@test
def killed_qemu_is_noticed_and_cleaned():
    r = Run("demo-kernel", "--lifetime", "5m")
    r.wait_line(r"^QDESK-DEMO-READY", 60)
    rundir = os.path.join(r.state, "run", leftovers(r.state)[0])
    with open(os.path.join(rundir, "qemu.pid")) as f:
        pid = int(f.read())
    os.kill(pid, signal.SIGKILL)
    rc, err = r.finish(timeout=20)
    assert rc == 1, f"a killed QEMU must fail the run, got {rc}"
    assert "killed by signal 9" in err, err
    assert leftovers(r.state) == [], leftovers(r.state)
    assert process_gone(pid)


@test
def qemu_runs_as_the_configured_user():
    nobody = pwd.getpwnam("nobody")
    r = Run("demo-kernel", "--lifetime", "5m", extra="qemu_user = nobody\n")
    r.wait_line(r"^QDESK-DEMO-READY", 60)
    rundir = os.path.join(r.state, "run", leftovers(r.state)[0])
    with open(os.path.join(rundir, "qemu.pid")) as f:
        pid = int(f.read())
    uids = [l for l in open(f"/proc/{pid}/status") if l.startswith("Uid:")][0].split()[1:]
    assert uids == [str(nobody.pw_uid)] * 4, f"QEMU runs with uids {uids}"
    assert os.stat(rundir).st_uid == nobody.pw_uid
    assert os.stat(rundir).st_mode & 0o777 == 0o700
    r.proc.send_signal(signal.SIGINT)
    rc, err = r.finish()
    assert rc == 0 and leftovers(r.state) == [], err


@test
def qemu_that_fails_to_start_leaves_nothing():
    # /bin/false stands where QEMU should be: the overlay is made, then QEMU fails.
    r = Run("demo", extra="qemu_x86_64 = /bin/false\n")
    rc, err = r.finish(timeout=20)
    assert rc == 1 and "QEMU exited while starting" in err, err
    assert leftovers(r.state) == [], leftovers(r.state)


@test
def missing_pieces_get_clear_errors():
    cases = [
        ("demo-uefi", "ovmf_code = /nonexistent/OVMF_CODE.fd\n", "Debian package ovmf"),
        ("demo", "qemu_img = /nonexistent/qemu-img\n", "Debian package qemu-utils"),
        ("demo", "qemu_x86_64 = /nonexistent/qemu-system-x86_64\n",
         "Debian package qemu-system-x86"),
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
    cases = [(["--cpus", "999"], "cpus: 999 is more than this host's"),
             (["--memory", "12X"], "memory: '12X' must be a size"),
             (["--lifetime", "90"], "lifetime: '90' must be a duration"),
             (["--memory", "64M"], "memory_mb: 64 MiB is out of range")]
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
    shutil.rmtree(WORK, ignore_errors=True)


if __name__ == "__main__":
    run_tests(teardown)
