#!/usr/bin/python3
"""GPUs and host devices on this machine, end to end: virgl 3D through virtio-vga-gl
in an X display (Xvfb with Mesa's llvmpipe, since this host has no render node),
the fallback when no render node exists, USB hot-plug into a running guest, guest
RAM from hugepages, pinned vCPUs, and requests this host cannot meet."""
import json
import os
import shutil
import subprocess
import time

from qdesk import QDESK, Pool, eventually, leftovers, run_tests, tmpdir

pool = Pool()
service = pool.service


def free_display():
    n = 90
    while os.path.exists(f"/tmp/.X11-unix/X{n}") or os.path.exists(f"/tmp/.X{n}-lock"):
        n += 1
    return f":{n}"


@pool.test
def virgl_guest_renders_3d_in_an_x_display():
    display = free_display()
    xvfb = subprocess.Popen(["Xvfb", display, "-screen", "0", "1280x800x24", "-nolisten",
                             "tcp"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        eventually(lambda: os.path.exists(f"/tmp/.X11-unix/X{display[1:]}"), 10, "Xvfb")
        svc = service(f"[gpu]\nvirgl_display = sdl\nvirgl_x_display = {display}\n")
        s = svc.boot(gpu="virgl", memory_mb=512)
        assert s["gpu"] == "virgl" and "warning" not in s, s
        line = svc.wait_serial(s["id"], r"^QDESK-KMSG .*features: \+virgl.*$", 30)
        print(f"# guest kernel: {line}")
        cmdline = open(os.path.join(svc.state, "run", s["id"], "cmdline")).read()
        assert "virtio-vga-gl" in cmdline and "sdl,gl=on" in cmdline, cmdline
    finally:
        xvfb.terminate()
        xvfb.wait()


@pool.test
def virgl_without_a_render_node_falls_back_with_a_warning():
    svc = service()  # egl-headless, and this host has no /dev/dri/renderD*
    s = svc.create(gpu="virgl", memory_mb=256)
    assert s.get("warning", "").startswith("no 3D"), s
    svc.wait_serial(s["id"], r"^QDESK-DEMO-READY", 60)
    assert "features: +virgl" not in svc.serial(s["id"])
    cmdline = open(os.path.join(svc.state, "run", s["id"], "cmdline")).read()
    assert "virtio-vga" in cmdline and "virtio-vga-gl" not in cmdline, cmdline


@pool.test
def usb_hot_plug_is_seen_by_the_guest_kernel():
    svc = service()
    s = svc.boot(memory_mb=256)
    sid = s["id"]
    status, out = svc.api("POST", f"/api/v1/sessions/{sid}/usb", {"device": "usb-kbd"})
    assert status == 200, out
    dev = out["device"]
    svc.wait_serial(sid, r"^QDESK-KMSG usb .*Product: QEMU USB Keyboard", 20)
    svc.wait_serial(sid, r"^QDESK-INPUT .*USB Keyboard", 20)
    # the CLI does the same
    cli = svc.qdesk("usb", "attach", sid, "usb-mouse")
    assert cli.returncode == 0 and cli.stdout.startswith("attached usb-mouse-"), cli
    status, out = svc.api("DELETE", f"/api/v1/sessions/{sid}/usb/{dev}")
    assert status == 200, out
    svc.wait_serial(sid, r"^QDESK-KMSG usb .*USB disconnect.*$", 20)
    status, out = svc.api("POST", f"/api/v1/sessions/{sid}/usb", {"device": "beef:cafe"})
    assert status == 400 and "usb:" in out["error"]["message"], out


@pool.test
def guest_ram_from_hugepages_is_reserved_and_given_back():
    pool_dir = "/sys/kernel/mm/hugepages/hugepages-2048kB"

    def pages(name):
        return int(open(f"{pool_dir}/{name}").read())
    before, free_before = pages("nr_hugepages"), pages("free_hugepages")
    cat = tmpdir("qd-hcat-")
    try:
        for f in ("demo-kernel.vmlinux", "demo-kernel.initrd"):  # links out are refused
            shutil.copy(os.path.join(os.path.dirname(__file__), "..", "..", "machines", f),
                        os.path.join(cat, f))
        conf = open(os.path.join(os.path.dirname(__file__), "..", "..", "machines",
                                 "demo-kernel.conf")).read()
        with open(os.path.join(cat, "demo-kernel.conf"), "w") as f:
            f.write(conf + "\nhugepages = 2M\nmemory = 256M\n")
        svc = service(machines=cat)  # no hugetlbfs mount: QEMU takes them through memfd
        s = svc.boot()
        assert pages("nr_hugepages") == before + 128, "256 MiB of 2 MiB pages reserved"
        # the reservation added 128 free pages; the guest's RAM took every one of them
        used = free_before + 128 - pages("free_hugepages")
        assert used == 128, f"the guest's RAM took {used} of its 128 reserved pages"
        svc.api("DELETE", f"/api/v1/sessions/{s['id']}")
        svc.wait_state(s["id"], "stopped", 40)
        assert pages("nr_hugepages") == before, "the hugepages were not given back"
        assert pages("free_hugepages") == free_before
    finally:
        pool.close()
        subprocess.run(["rm", "-rf", cat])


@pool.test
def pinned_vcpus_run_on_their_own_cpu():
    cat = tmpdir("qd-pcat-")
    machines = os.path.join(os.path.dirname(__file__), "..", "..", "machines")
    for f in ("demo-kernel.vmlinux", "demo-kernel.initrd"):
        shutil.copy(os.path.join(machines, f), os.path.join(cat, f))
    conf = open(os.path.join(machines, "demo-kernel.conf")).read()
    with open(os.path.join(cat, "demo-kernel.conf"), "w") as f:
        f.write(conf + "\npin_cpus = yes\nmemory = 256M\n")
    try:
        svc = service("[limits]\nuser_cpu_fraction = 4\n", machines=cat)
        s = svc.boot(cpus=1)
        eventually(lambda: "vCPUs pinned" in svc.log(), 10, "the pinning")
        pid = int(open(os.path.join(svc.state, "run", s["id"], "qemu.pid")).read())
        vcpu = None
        for tid in os.listdir(f"/proc/{pid}/task"):
            name = open(f"/proc/{pid}/task/{tid}/comm").read().strip()
            if name.startswith("CPU 0/"):
                vcpu = tid
        assert vcpu, "no vCPU thread (debug-threads names them)"
        allowed = [l for l in open(f"/proc/{pid}/task/{vcpu}/status")
                   if l.startswith("Cpus_allowed_list")][0].split()[1]
        assert allowed in ("0", "1"), f"vCPU 0 may run on {allowed}, not on one CPU"
        # a second pinned session gets the other CPU, a third finds none free
        t = svc.create(cpus=1)
        status, out = svc.api("POST", "/api/v1/sessions", {"machine": "demo-kernel"})
        assert status == 409 and "cpus" in out["error"]["message"], out
        svc.wait_state(t["id"], "running", 30)
        eventually(lambda: svc.log().count("vCPUs pinned") == 2, 10, "the second pinning")
        # the first session's other threads left the CPU the second one's vCPU took
        for tid in os.listdir(f"/proc/{pid}/task"):
            if tid == vcpu:
                continue
            mine = [l for l in open(f"/proc/{pid}/task/{tid}/status")
                    if l.startswith("Cpus_allowed_list")][0].split()[1]
            assert mine == allowed, f"QEMU thread {tid} may run on {mine}, not {allowed}"
    finally:
        pool.close()
        subprocess.run(["rm", "-rf", cat])


@pool.test
def bridged_guest_gets_a_tap_on_the_bridge():
    br = f"qdbr{os.getpid() % 100000}"
    subprocess.run(["ip", "link", "add", br, "type", "bridge"], check=True)

    def taps():
        out = subprocess.run(["ip", "-o", "link", "show", "master", br], capture_output=True,
                             text=True).stdout
        return [line.split(":")[1].strip() for line in out.splitlines()]
    try:
        svc = service()
        s = svc.boot(net=f"bridge={br}", memory_mb=256)
        assert len(taps()) == 1 and taps()[0].startswith("qdtap"), taps()
        cmdline = open(os.path.join(svc.state, "run", s["id"], "cmdline")).read()
        assert "tap,id=net0,fd=3" in cmdline, cmdline
        svc.api("DELETE", f"/api/v1/sessions/{s['id']}")
        svc.wait_state(s["id"], "stopped", 40)
        assert taps() == [], "the tap outlived its guest"
        status, out = svc.api("POST", "/api/v1/sessions",
                              {"machine": "demo-kernel", "net": "bridge=qdnobridge"})
        assert status == 400 and "no bridge 'qdnobridge'" in out["error"]["message"], out
        assert leftovers(svc.state) == []
    finally:
        subprocess.run(["ip", "link", "del", br])


@pool.test
def gpus_this_host_lacks_are_refused_cleanly():
    svc = service()
    for gpu, want in (("vf", "SR-IOV"), ("passthrough", "passed through"),
                      ("mdev", "mediated")):
        status, out = svc.api("POST", "/api/v1/sessions", {"machine": "demo-kernel",
                                                           "gpu": gpu})
        assert status == 400 and out["error"]["message"].startswith("gpu:"), (gpu, out)
        print(f"# {gpu}: {out['error']['message']}")
    assert leftovers(svc.state) == []
    status, host = svc.api("GET", "/api/v1/host")
    for key in ("gpus", "vfs", "mdev_types", "render_nodes", "usb", "hugepages",
                "gpu_kinds"):
        assert key in host, key
    # per kind, what a new session could get: nothing of what this host lacks
    for gpu in ("vf", "passthrough", "mdev"):
        assert host["gpu_kinds"][gpu] == {"offered": False, "total": 0, "free": 0}, host


@pool.test
def host_check_reports_with_fixes():
    out = subprocess.run([QDESK, "host", "check", "--json"], capture_output=True, text=True)
    report = json.loads(out.stdout)
    checks = {c["feature"]: c for c in report["checks"]}
    # this host cannot run KVM guests (no /dev/kvm, or a CPU without vmx/svm): KVM
    # is reported failing, with the reason that holds here and what to do
    kvm = checks["kvm"]
    why = "vmx or svm" if os.path.exists("/dev/kvm") else "/dev/kvm cannot be opened"
    assert kvm["status"] == "fail" and why in kvm["detail"] and kvm["fix"], kvm
    assert checks["ovmf"]["status"] == "ok", checks["ovmf"]
    assert report["ok"] is False and out.returncode != 0



if __name__ == "__main__":
    run_tests(pool.close)
