#!/usr/bin/python3
"""The JSON API against a real `qdesk serve` and the demo guest: the life of a
session, validation errors, admission refusals, accounts, ownership, CSRF, login
limits, expiry, a VM that dies, and the metrics that report all of it."""
import http.client
import json
import os
import shutil
import signal
import subprocess
import threading
import time

from qdesk import Pool, eventually, leftovers, run_tests, tmpdir

pool = Pool()
service = pool.service


@pool.test
def machines_are_listed():
    svc = service()
    status, machines = svc.api("GET", "/api/v1/machines")
    assert status == 200
    names = {m["name"]: m for m in machines}
    assert {"demo", "demo-disk", "demo-kernel"} <= set(names), names.keys()
    assert names["demo-disk"]["format"] == "qcow2"
    assert names["demo"]["media"] == "cdrom"
    assert names["demo-kernel"]["description"]


@pool.test
def session_life_create_serial_extend_stop():
    svc = service()
    s = svc.create(machine="demo-kernel", cpus=1, memory_mb=512, lifetime_s=3600)
    base = svc.base
    assert s["state"] in ("starting", "running"), s
    assert s["url"].startswith(base + "/s/") and s["view_url"].startswith(base + "/s/")
    assert s["url"] != s["view_url"]
    assert len(s["url"].rsplit("/", 1)[1]) == 43, "tokens carry 256 random bits"
    assert s["qr_svg_url"] == s["url"] + "/qr.svg"
    assert s["expires_at"] - s["created_at"] == 3600
    svc.wait_serial(s["id"], r"^QDESK-DEMO-READY", 60)
    assert svc.session(s["id"])["state"] == "running"
    status, listed = svc.api("GET", "/api/v1/sessions")
    assert [x["id"] for x in listed] == [s["id"]]

    status, qr = svc.get(s["qr_svg_url"][len(base):])
    assert status == 200 and qr.startswith(b"<svg") and b"<path" in qr

    status, ext = svc.api("POST", f"/api/v1/sessions/{s['id']}/extend", {"seconds": 1800})
    assert status == 200 and ext["expires_at"] == s["expires_at"] + 1800, ext
    status, err = svc.api("POST", f"/api/v1/sessions/{s['id']}/extend", {"seconds": 86400 * 30})
    assert status == 400 and "max_lifetime_s" in err["error"]["message"], err

    status, stopping = svc.api("DELETE", f"/api/v1/sessions/{s['id']}")
    assert status == 202 and stopping["state"] == "stopping", stopping
    svc.wait_state(s["id"], "stopped", 30)
    assert "QDESK-POWEROFF" not in svc.serial(s["id"])  # the log went with the session
    status, gone = svc.api("GET", f"/api/v1/sessions/{s['id']}/serial")
    assert status == 410, gone
    assert leftovers(svc.state) == []


@pool.test
def validation_errors_name_the_field_and_create_nothing():
    svc = service()
    cases = [
        ("not json", 400, "invalid_json", "JSON object"),
        ({"machine": "demo-kernel", "cpus": "two"}, 400, "invalid_field",
         "cpus: must be a whole number"),
        ({"machine": "demo-kernel", "cpus": 999}, 400, "invalid_field", "cpus: 999 is more"),
        ({"machine": "demo-kernel", "memory_mb": 16}, 400, "invalid_field", "memory_mb: 16 MiB"),
        ({"machine": "demo-kernel", "lifetime_s": 86400 * 60}, 400, "invalid_field",
         "lifetime_s"),
        ({"machine": "nope"}, 400, "invalid_field", "machine: 'nope' is not in the catalogue"),
        ({"machine": "../../etc"}, 400, "invalid_field", "machine: '../../etc'"),
        ({"machine": "demo-kernel", "colour": "red"}, 400, "invalid_field",
         "'colour' is not a session field"),
        ({"machine": "demo-kernel", "usb": ["mouse"]}, 400, "invalid_field", "usb: 'mouse'"),
        ({"machine": "demo-kernel", "gpu": "cuda"}, 400, "invalid_field", "gpu: 'cuda'"),
        ({"machine": "demo-kernel", "disk_gb": 4}, 400, "invalid_field", "disk_gb"),
        ({}, 400, "invalid_field", "machine: required"),
    ]
    for body, want_status, want_code, want_msg in cases:
        status, out = svc.api("POST", "/api/v1/sessions", body)
        assert status == want_status, f"{body}: {status} {out}"
        assert out["error"]["code"] == want_code and want_msg in out["error"]["message"], \
            f"{body}: {out}"
    status, big = svc.api("POST", "/api/v1/sessions", {"machine": "x" * 200000})
    assert status == 413, big
    assert svc.api("GET", "/api/v1/sessions")[1] == []
    assert leftovers(svc.state) == []


@pool.test
def admission_refuses_politely_before_any_work():
    svc = service("[limits]\nmax_sessions = 1\n")
    a = svc.create()
    status, out = svc.api("POST", "/api/v1/sessions", {"machine": "demo-kernel"})
    assert status == 503 and out["error"]["code"] == "max_sessions", out
    assert "max_sessions" in out["error"]["message"] and "1" in out["error"]["message"]
    assert len(leftovers(svc.state)) == 1, "a refusal made a run directory"
    status, metrics = svc.get("/metrics")
    assert b'qdesk_session_refusals_total{reason="max_sessions"} 1' in metrics
    svc.api("DELETE", f"/api/v1/sessions/{a['id']}")

    busy = service("[limits]\nmax_load_per_core = 0\n")
    status, out = busy.api("POST", "/api/v1/sessions", {"machine": "demo-kernel"})
    # a machine that is never idle: any load above zero is too much
    assert status == 503 and out["error"]["code"] == "max_load_per_core", out
    full = service("[limits]\nmin_mem_available_mb = 100000G\n")
    status, out = full.api("POST", "/api/v1/sessions", {"machine": "demo-kernel"})
    assert status == 503 and out["error"]["code"] == "min_mem_available_mb", out
    assert "MiB available" in out["error"]["message"]
    mine = service("[limits]\nmax_sessions_per_user = 1\n")
    mine.create()
    status, out = mine.api("POST", "/api/v1/sessions", {"machine": "demo-kernel"})
    assert status == 503 and out["error"]["code"] == "max_sessions_per_user", out
    for s in (busy, full):
        assert leftovers(s.state) == []


@pool.test
def each_user_gets_a_share_of_the_cores_and_memory():
    cores = os.cpu_count()
    mem_mb = next(int(line.split()[1]) // 1024 for line in open("/proc/meminfo")
                  if line.startswith("MemTotal:"))
    # each user may hold one core and 400 MiB of this host
    svc = service(f"[limits]\nuser_cpu_fraction = {1 / cores:.6f}\n"
                  f"user_memory_fraction = {400 / mem_mb:.6f}\n")
    a = svc.create(cpus=1, memory_mb=256)
    status, out = svc.api("POST", "/api/v1/sessions",
                          {"machine": "demo-kernel", "cpus": 1, "memory_mb": 128})
    assert status == 503 and out["error"]["code"] == "user_cpu_fraction", out
    assert f"would hold 2 of this host's {cores} cores" in out["error"]["message"], out
    svc.api("DELETE", f"/api/v1/sessions/{a['id']}")
    svc.wait_state(a["id"], "stopped", 30)
    status, out = svc.api("POST", "/api/v1/sessions",
                          {"machine": "demo-kernel", "cpus": 1, "memory_mb": 512})
    assert status == 503 and out["error"]["code"] == "user_memory_fraction", out
    assert "would hold 512 MiB" in out["error"]["message"] and \
        "allows 400 MiB" in out["error"]["message"], out
    status, metrics = svc.get("/metrics")
    for reason in ("user_cpu_fraction", "user_memory_fraction"):
        assert f'qdesk_session_refusals_total{{reason="{reason}"}} 1'.encode() in metrics
    assert leftovers(svc.state) == []
    svc.create(cpus=1, memory_mb=384)  # within both shares


def local_accounts(svc):
    for name, admin in (("alice", False), ("bob", False), ("carol", True)):
        args = ["user", "add", name, "--password-stdin"] + (["--admin"] if admin else [])
        out = svc.qdesk(*args, input=f"{name}-password\n")
        assert out.returncode == 0, out.stderr


def local_service(name, conf=""):
    """A service with local accounts: alice and bob, and carol the administrator."""
    svc = service("[auth]\nauth = local\n" + conf, name=name, start=False)
    local_accounts(svc)
    return svc.start()


@pool.test
def users_see_and_touch_only_their_own_sessions():
    svc = local_service("own")
    status, out = svc.api("GET", "/api/v1/sessions")
    assert status == 401, out
    alice = svc.login("alice", "alice-password")
    bob = svc.login("bob", "bob-password")
    carol = svc.login("carol", "carol-password")
    s = svc.create(login=alice)
    assert s["owner"] == "alice"
    assert svc.api("GET", f"/api/v1/sessions/{s['id']}", login=bob)[0] == 404
    assert svc.api("DELETE", f"/api/v1/sessions/{s['id']}", login=bob)[0] == 404
    assert svc.api("GET", f"/api/v1/sessions/{s['id']}/serial", login=bob)[0] == 404
    assert svc.api("GET", "/api/v1/sessions", login=bob)[1] == []
    assert svc.api("DELETE", "/api/v1/sessions", login=bob)[0] == 403
    assert svc.api("GET", f"/api/v1/sessions/{s['id']}", login=carol)[0] == 200
    status, me = svc.api("GET", "/api/v1/me", login=carol)
    assert me["user"] == "carol" and me["admin"] is True
    assert svc.api("DELETE", f"/api/v1/sessions/{s['id']}", login=carol)[0] == 202
    # logging out ends the cookie
    assert svc.api("POST", "/api/v1/logout", login=alice)[0] == 200
    assert svc.api("GET", "/api/v1/sessions", login=alice)[0] == 401


@pool.test
def a_new_password_or_admin_flag_ends_the_users_logins():
    svc = local_service("pw")
    carol = svc.login("carol", "carol-password")
    assert svc.api("GET", "/api/v1/me", login=carol)[1]["admin"] is True
    out = svc.qdesk("user", "passwd", "carol", "--no-admin", "--password-stdin",
                    input="carol-password-2\n")
    assert out.returncode == 0, out.stderr
    assert svc.api("GET", "/api/v1/sessions", login=carol)[0] == 401, "the old login lives"
    carol = svc.login("carol", "carol-password-2")
    assert svc.api("GET", "/api/v1/me", login=carol)[1]["admin"] is False
    assert svc.api("DELETE", "/api/v1/sessions", login=carol)[0] == 403
    users = json.loads(svc.qdesk("user", "list", "--json").stdout)
    assert {u["name"]: u["admin"] for u in users} == {"alice": False, "bob": False,
                                                     "carol": False}, users


@pool.test
def an_administrator_stops_every_session_at_once():
    svc = service()
    a, b = svc.create(memory_mb=256), svc.create(memory_mb=256)
    status, out = svc.api("DELETE", "/api/v1/sessions")
    assert status == 200 and out["stopping"] == 2, out
    for s in (a, b):
        svc.wait_state(s["id"], "stopped", 40)
    assert leftovers(svc.state) == []
    assert svc.log().count("stopping: an administrator stopped all sessions") == 2


@pool.test
def state_changes_need_the_csrf_token():
    svc = local_service("csrf")
    alice = svc.login("alice", "alice-password")
    status, out = svc.api("POST", "/api/v1/sessions", {"machine": "demo-kernel"}, login=alice,
                          csrf=False)
    assert status == 403 and out["error"]["code"] == "csrf", out
    alice.csrf = "stale"
    status, out = svc.api("POST", "/api/v1/sessions", {"machine": "demo-kernel"}, login=alice)
    assert status == 403 and out["error"]["code"] == "csrf", out
    assert leftovers(svc.state) == []
    # the cookie is HttpOnly and SameSite=Strict
    status, headers, _ = svc.request("POST", "/api/v1/login",
                                     {"user": "bob", "password": "bob-password"},
                                     {"X-CSRF-Token": "x"})
    cookie = headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie, cookie


@pool.test
def logins_are_rate_limited():
    svc = local_service("rate", "login_attempts_per_minute = 5\n")
    codes = []
    for _ in range(7):
        status, headers, _ = svc.request("POST", "/api/v1/login",
                                         {"user": "alice", "password": "wrong"},
                                         {"X-CSRF-Token": "x"})
        codes.append(status)
        if status == 429:
            assert int(headers["Retry-After"]) > 0
    assert codes[:5] == [401] * 5 and codes[5:] == [429, 429], codes
    # even the right password waits out the limit
    status, _, _ = svc.request("POST", "/api/v1/login",
                               {"user": "alice", "password": "alice-password"},
                               {"X-CSRF-Token": "x"})
    assert status == 429


@pool.test
def pam_accounts_log_in():
    user = "qdesk-test-pam"
    subprocess.run(["userdel", "-r", user], capture_output=True)
    subprocess.run(["groupadd", "-f", "qdesk-admin"], check=True)
    subprocess.run(["useradd", "-M", "-G", "qdesk-admin", user], check=True)
    try:
        subprocess.run(["chpasswd"], input=f"{user}:pam-password-1\n", text=True, check=True)
        svc = service("[auth]\nauth = pam\npam_service = login\n", name="pam")
        status, _, _ = svc.request("POST", "/api/v1/login",
                                   {"user": user, "password": "nope"}, {"X-CSRF-Token": "x"})
        assert status == 401
        login = svc.login(user, "pam-password-1")
        status, me = svc.api("GET", "/api/v1/me", login=login)
        assert me["user"] == user and me["admin"] is True, me
    finally:
        subprocess.run(["userdel", user], capture_output=True)


@pool.test
def auth_none_is_refused_on_a_public_address():
    svc = service(name="open", start=False)
    with open(svc.conf, "a") as f:
        f.write("[server]\nlisten = 0.0.0.0:%d\n" % svc.port)
    out = svc.qdesk("serve", timeout=10)
    assert out.returncode != 0 and "auth = none on the non-loopback address" in out.stderr, \
        out.stderr


@pool.test
def sessions_expire_and_clean_up():
    svc = service("[sessions]\nmin_lifetime_s = 5s\n")
    s = svc.create(lifetime_s=8)
    svc.wait_serial(s["id"], r"^QDESK-DEMO-READY", 60)
    svc.wait_state(s["id"], "stopped", 40)
    assert "its lifetime ended" in svc.log()
    assert leftovers(svc.state) == []


@pool.test
def ended_sessions_are_forgotten_after_keep_ended_s():
    svc = service("[sessions]\nkeep_ended_s = 2s\n")
    a = svc.create(memory_mb=256)
    svc.api("DELETE", f"/api/v1/sessions/{a['id']}")
    svc.wait_state(a["id"], "stopped", 40)
    time.sleep(3)
    b = svc.create(memory_mb=256)  # the next session to end clears out the old
    svc.api("DELETE", f"/api/v1/sessions/{b['id']}")
    svc.wait_state(b["id"], "stopped", 40)
    assert svc.api("GET", f"/api/v1/sessions/{a['id']}")[0] == 404
    assert [s["id"] for s in svc.api("GET", "/api/v1/sessions")[1]] == [b["id"]]


@pool.test
def a_vm_that_dies_is_marked_failed_and_freed():
    svc = service()
    s = svc.boot()
    pid = int(open(os.path.join(svc.state, "run", s["id"], "qemu.pid")).read())
    os.kill(pid, signal.SIGKILL)
    failed = svc.wait_state(s["id"], "failed", 15)
    assert "signal 9" in failed["error"], failed
    assert leftovers(svc.state) == []
    status, metrics = svc.get("/metrics")
    assert b"qdesk_session_failures_total 1" in metrics, metrics


@pool.test
def a_qemu_that_never_answers_fails_the_session():
    svc = service(name="hung", start=False)
    hung = os.path.join(svc.dir, "hung-qemu")
    with open(hung, "w") as f:  # a QEMU that hangs before it opens its QMP socket
        f.write("#!/bin/sh\nkill -STOP $$\nexec /usr/bin/qemu-system-x86_64 \"$@\"\n")
    os.chmod(hung, 0o755)
    with open(svc.conf, "a") as f:
        f.write(f"[qemu]\nqemu_x86_64 = {hung}\nstart_timeout_s = 2s\n")
    svc.start()
    s = svc.create()
    failed = svc.wait_state(s["id"], "failed", 30)
    assert "did not answer on QMP within 2 s" in failed["error"], failed
    assert leftovers(svc.state) == []
    status, metrics = svc.get("/metrics")
    assert b"qdesk_session_failures_total 1" in metrics, metrics
    assert subprocess.run(["pgrep", "-f", hung], capture_output=True).returncode == 1


def wrapped_qemu_img(svc, script):
    """Points the service at a qemu-img that runs script first (then the real one)."""
    path = os.path.join(svc.dir, "qemu-img")
    with open(path, "w") as f:
        f.write(f"#!/bin/sh\n{script}\nexec /usr/bin/qemu-img \"$@\"\n")
    os.chmod(path, 0o755)
    with open(svc.conf, "a") as f:
        f.write(f"[qemu]\nqemu_img = {path}\n")


@pool.test
def the_service_answers_while_a_disk_is_prepared_and_a_stop_then_wins():
    svc = service(name="slowimg", start=False)
    wrapped_qemu_img(svc, 'case "$1" in create) sleep 2;; esac')  # a busy host's disk
    svc.start()
    result = {}
    creating = threading.Thread(target=lambda: result.update(
        out=svc.api("POST", "/api/v1/sessions", {"machine": "demo-disk"})))
    creating.start()
    # the loop is not blocked: the session is listed as creating meanwhile
    s = eventually(lambda: next((x for x in svc.api("GET", "/api/v1/sessions")[1]
                                 if x["state"] == "creating"), None), 10,
                   "the session to be listed as creating")
    status, out = svc.api("DELETE", f"/api/v1/sessions/{s['id']}")
    assert status == 202 and out["state"] == "stopping", out
    creating.join(30)
    status, out = result["out"]
    assert status == 201 and out["state"] == "stopped", (status, out)
    assert leftovers(svc.state) == []
    assert not os.path.exists(os.path.join(svc.state, "run", s["id"]))


@pool.test
def a_disk_that_cannot_be_prepared_leaves_nothing():
    svc = service(name="badimg", start=False)
    wrapped_qemu_img(svc, 'case "$1" in create) echo "No space left on device" >&2; '
                          'exit 1;; esac')
    svc.start()
    status, out = svc.api("POST", "/api/v1/sessions", {"machine": "demo-disk"})
    assert status == 500 and out["error"]["code"] == "start_failed", (status, out)
    assert "No space left on device" in out["error"]["message"], out
    assert svc.api("GET", "/api/v1/sessions")[1] == []
    assert leftovers(svc.state) == []


@pool.test
def metrics_answer_admins_this_host_and_scrapers_with_the_token():
    addr, link = "198.18.7.1", "qdmetrics0"
    subprocess.run(["ip", "link", "del", link], capture_output=True)
    subprocess.run(["ip", "link", "add", link, "type", "bridge"], check=True)
    try:
        subprocess.run(["ip", "addr", "add", f"{addr}/32", "dev", link], check=True)
        subprocess.run(["ip", "link", "set", link, "up"], check=True)
        svc = service("[auth]\nauth = local\n[server]\nmetrics_token = scrape-me-please\n",
                      name="metrics", start=False)
        with open(svc.conf, "a") as f:
            f.write(f"[server]\nlisten = 0.0.0.0:{svc.port}\n")
        local_accounts(svc)
        svc.start()

        def scrape(headers):  # from an address that is not this host's loopback
            conn = http.client.HTTPConnection(addr, svc.port, timeout=10,
                                              source_address=(addr, 0))
            conn.request("GET", "/metrics", headers=headers)
            resp = conn.getresponse()
            return resp.status, resp.read()

        status, body = scrape({})
        assert status == 401 and b"metrics_token" in body, body
        assert scrape({"Authorization": "Bearer scrape-me-not"})[0] == 401
        status, body = scrape({"Authorization": "Bearer scrape-me-please"})
        assert status == 200 and b"qdesk_sessions{" in body, body
        carol, alice = svc.login("carol", "carol-password"), svc.login("alice", "alice-password")
        assert scrape({"Cookie": carol.cookie})[0] == 200  # an administrator
        assert scrape({"Cookie": alice.cookie})[0] == 401
        assert svc.get("/metrics")[0] == 200  # on this host
    finally:
        subprocess.run(["ip", "link", "del", link], capture_output=True)


@pool.test
def health_fails_when_the_catalogue_cannot_be_read():
    cat = tmpdir("qd-cat-")
    try:
        svc = service(machines=cat, name="health")
        assert svc.get("/healthz")[0] == 200
        os.rename(cat, cat + ".away")
        status, body = svc.get("/healthz")
        assert status == 503 and b"catalogue" in body, body
        os.rename(cat + ".away", cat)
        assert svc.get("/healthz")[0] == 200
    finally:
        shutil.rmtree(cat, ignore_errors=True)
        shutil.rmtree(cat + ".away", ignore_errors=True)


@pool.test
def metrics_and_health():
    svc = service()
    status, body = svc.get("/healthz")
    assert status == 200
    s = svc.create()
    svc.wait_state(s["id"], "running", 30)
    status, metrics = svc.get("/metrics")
    text = metrics.decode()
    assert 'qdesk_sessions{state="running"} 1' in text, text
    assert "qdesk_session_creates_total 1" in text
    assert "process_resident_memory_bytes" in text
    assert "# TYPE qdesk_proxy_bytes_total counter" in text


@pool.test
def cli_talks_to_the_service():
    svc = service()
    out = svc.qdesk("start", "demo-kernel", "--memory", "256M", "--json")
    assert out.returncode == 0, out.stderr
    s = json.loads(out.stdout)
    assert s["memory_mb"] == 256 and s["url"]
    out = svc.qdesk("status")
    assert s["id"] in out.stdout and "demo-kernel" in out.stdout, out.stdout
    out = svc.qdesk("start", "demo-kernel", "--cpus", "999")
    assert out.returncode != 0 and "cpus" in out.stderr
    out = svc.qdesk("stop", s["id"], "--json")
    assert out.returncode == 0 and json.loads(out.stdout)["state"] == "stopping", out.stdout
    svc.wait_state(s["id"], "stopped", 30)
    b = json.loads(svc.qdesk("start", "demo-kernel", "--memory", "256M", "--json").stdout)
    out = svc.qdesk("stop", "--all")
    assert out.returncode == 0 and out.stdout == "stopping 1 sessions\n", out.stdout
    svc.wait_state(b["id"], "stopped", 30)
    assert svc.qdesk("stop", "nope").returncode == 2
    # the control socket is for root and the service's user only
    mode = os.stat(os.path.join(svc.state, "control.sock")).st_mode & 0o777
    assert mode == 0o600, oct(mode)



if __name__ == "__main__":
    run_tests(pool.close)
