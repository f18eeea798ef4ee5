#!/usr/bin/python3
"""A SIMULATION of the parts of a Kubernetes API server with KubeVirt that qdesk's
KubeVirt runner uses — for tests on a machine that cannot run a cluster. It is not
Kubernetes: one namespace-agnostic store, one "node", no admission webhooks.

What it does implement, as the real ones do (Kubernetes API conventions; KubeVirt
v1.9.0's virt-api and virt-handler):
  - HTTPS with a CA of the test's, bearer tokens and client certificates;
  - VirtualMachineInstances (kubevirt.io/v1): create (checked strictly against
    KubeVirt's OpenAPI schema: 422 Invalid with causes), get, list by label
    selector, watch (?watch=true: newline-delimited {"type", "object"} events,
    resourceVersion, allowWatchBookmarks, timeoutSeconds; a resourceVersion older
    than the retained history gets an ERROR event with a Status of code 410),
    delete (gracePeriodSeconds), with Status bodies for every failure;
  - Secrets: create, delete, merge-patch (ownerReferences), list; an owner's
    deletion removes them, as the garbage collector does;
  - ResourceQuotas: list (one quota, from --quota-cpu / --quota-memory);
  - the phases Pending, Scheduling (PodScheduled False/Unschedulable with the
    scheduler's message when a requested device resource is exhausted),
    Scheduled, Running, Succeeded, Failed;
  - each VMI runs as a real local QEMU of the demo guest (demo-kernel, TCG);
  - the VNC subresource: a WebSocket (subprotocol plain.kubevirt.io) whose binary
    messages carry the QEMU's VNC socket; one connection per VMI, a new one closes
    the old (virt-handler's newStopChan); vnc/screenshot (QMP screendump, PNG).

Test controls under /_sim/ (no auth): GET /_sim/state (pids, watch and list
requests seen), POST /_sim/drop-watches, POST /_sim/compact (forget history),
POST /_sim/devices {"RESOURCE": count}.

  apiserver.py --dir DIR --machines DIR [--token T] [--client-ca FILE] ...
writes DIR/ready (JSON: port, ca) once it listens.
"""
import argparse
import base64
import hashlib
import http.server
import json
import os
import shutil
import signal
import socket
import socketserver
import ssl
import select
import struct
import subprocess
import sys
import threading
import time
import traceback
import urllib.parse
import uuid

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                "schema"))
from kvschema import Schema  # noqa: E402

VMI_PREFIX = "/apis/kubevirt.io/v1/namespaces/"
SUB_PREFIX = "/apis/subresources.kubevirt.io/v1/namespaces/"
CORE_PREFIX = "/api/v1/namespaces/"
WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
NODE = "sim-node-1"


def status_body(code, reason, message, details=None):
    body = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": message, "reason": reason, "code": code}
    if details:
        body["details"] = details
    return body


class Store:
    """Objects, their resourceVersions and the history watches replay."""

    def __init__(self, args):
        self.args = args
        self.lock = threading.Condition()
        self.rv = 100
        self.history = []  # (rv, type, kind, object)
        self.vmis = {}     # (ns, name) -> object
        self.secrets = {}
        self.vms = {}      # (ns, name) -> Guest
        self.devices = {}  # resource -> free count
        self.watch_rvs = []
        self.lists = 0
        self.watch_conns = []
        self.vnc = {}      # (ns, name) -> socket of the current viewer

    def bump(self, kind, typ, obj):
        """Records a change (the lock held); returns the new resourceVersion."""
        self.rv += 1
        obj["metadata"]["resourceVersion"] = str(self.rv)
        self.history.append((self.rv, typ, kind, json.loads(json.dumps(obj))))
        self.lock.notify_all()
        return self.rv


class Guest:
    """The QEMU that stands in for one VMI's virt-launcher pod."""

    def __init__(self, store, key, vmi):
        self.store, self.key, self.vmi = store, key, vmi
        self.dir = os.path.join(store.args.dir, "vms", f"{key[0]}-{key[1]}")
        os.makedirs(self.dir, exist_ok=True)
        self.proc = None
        self.deleting = False
        self.grace = 30

    def argv(self):
        dom = self.vmi["spec"]["domain"]
        cpu = dom.get("cpu", {})
        n = cpu.get("sockets", 1) * cpu.get("cores", 1) * cpu.get("threads", 1)
        mem = dom.get("memory", {}).get("guest") or \
            dom.get("resources", {}).get("requests", {}).get("memory") or \
            dom.get("resources", {}).get("limits", {}).get("memory", "256Mi")
        mb = int(mem[:-2]) if mem.endswith("Mi") else 256
        m = self.store.args.machines
        with open(os.path.join(m, "demo-kernel.conf")) as f:
            append = next(l.split("=", 1)[1].strip() for l in f if l.startswith("append"))
        d = self.dir
        return ["qemu-system-x86_64", "-no-user-config", "-nodefaults",
                "-machine", "q35", "-accel", "tcg", "-cpu", "max", "-smp", str(n),
                "-m", f"{max(mb, 128)}M",
                "-kernel", os.path.join(m, "demo-kernel.vmlinux"),
                "-initrd", os.path.join(m, "demo-kernel.initrd"), "-append", append,
                "-display", "none", "-vnc", f"unix:{d}/vnc.sock,share=force-shared",
                "-device", "VGA", "-device", "qemu-xhci,id=usb",
                "-device", "usb-tablet,bus=usb.0",
                "-chardev", f"file,id=serial0,path={d}/serial.log", "-serial",
                "chardev:serial0",
                "-qmp", f"unix:{d}/qmp.sock,server=on,wait=off"]

    def start(self):
        log = open(os.path.join(self.dir, "qemu.log"), "w")
        self.proc = subprocess.Popen(self.argv(), stdout=log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, start_new_session=True)
        threading.Thread(target=self.supervise, daemon=True).start()

    def qmp(self, *commands):
        """Runs QMP commands; returns the last reply."""
        s = socket.socket(socket.AF_UNIX)
        s.settimeout(10)
        s.connect(os.path.join(self.dir, "qmp.sock"))
        f = s.makefile("rwb")
        f.readline()
        reply = None
        for cmd in ({"execute": "qmp_capabilities"},) + commands:
            f.write(json.dumps(cmd).encode() + b"\n")
            f.flush()
            while True:
                reply = json.loads(f.readline())
                if "return" in reply or "error" in reply:
                    break
        s.close()
        return reply

    def supervise(self):
        st = self.store
        deadline = time.monotonic() + 30
        while self.proc.poll() is None and time.monotonic() < deadline:
            try:
                self.qmp()
                break
            except OSError:
                time.sleep(0.05)
        with st.lock:
            vmi = st.vmis.get(self.key)
            if vmi is not None and self.proc.poll() is None and not self.deleting:
                vmi["status"]["phase"] = "Running"
                vmi["status"]["nodeName"] = NODE
                vmi["status"]["conditions"] = [
                    {"type": "Ready", "status": "True"},
                    {"type": "PodScheduled", "status": "True"}]
                st.bump("vmi", "MODIFIED", vmi)
        rc = self.proc.wait()
        with st.lock:
            vmi = st.vmis.get(self.key)
            if vmi is not None and not self.deleting:
                # the guest powered itself off, or QEMU died
                vmi["status"]["phase"] = "Succeeded" if rc == 0 else "Failed"
                if rc:
                    vmi["status"]["conditions"] = [
                        {"type": "Ready", "status": "False",
                         "message": f"virt-launcher exited with status {rc}"}]
                st.bump("vmi", "MODIFIED", vmi)

    def stop(self, grace):
        """ACPI power button, then after grace (virt-launcher's SIGTERM path) kill."""
        try:
            if grace > 0:
                self.qmp({"execute": "system_powerdown"})
                self.proc.wait(timeout=grace)
        except (OSError, subprocess.TimeoutExpired, ValueError):
            pass
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


def ws_frame(buf):
    """One masked client frame from buf: (opcode, payload, bytes used), or None when
    more bytes are needed. Raises ValueError for an unmasked frame."""
    if len(buf) < 2:
        return None
    op, n, pos = buf[0] & 0x0F, buf[1] & 0x7F, 2
    if not buf[1] & 0x80:
        raise ValueError("a client must mask its frames")
    if n == 126:
        if len(buf) < 4:
            return None
        n, pos = struct.unpack(">H", buf[2:4])[0], 4
    elif n == 127:
        if len(buf) < 10:
            return None
        n, pos = struct.unpack(">Q", buf[2:10])[0], 10
    if len(buf) < pos + 4 + n:
        return None
    mask = buf[pos:pos + 4]
    payload = bytes(b ^ mask[i % 4] for i, b in enumerate(buf[pos + 4:pos + 4 + n]))
    return op, payload, pos + 4 + n


def label_match(obj, selector):
    labels = obj["metadata"].get("labels", {})
    for term in filter(None, selector.split(",")):
        k, _, v = term.partition("=")
        if labels.get(k) != v:
            return False
    return True


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "kube-apiserver-simulation"

    def log_message(self, fmt, *args):
        sys.stderr.write("sim: " + (fmt % args) + "\n")

    # -- replies --

    def reply(self, code, body, ctype="application/json"):
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def fail(self, code, reason, message, details=None):
        self.reply(code, status_body(code, reason, message, details))

    def body(self):
        n = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(n) if n else b""
        try:
            return json.loads(raw) if raw else None
        except ValueError:
            return ValueError

    def authorized(self):
        st = self.server.store
        auth = self.headers.get("Authorization", "")
        if st.args.token and auth == f"Bearer {st.args.token}":
            return True
        if st.args.client_ca and isinstance(self.connection, ssl.SSLSocket) and \
                self.connection.getpeercert():
            return True
        self.fail(401, "Unauthorized", "Unauthorized")
        return False

    # -- routing --

    def do_GET(self):
        self.route("GET")

    def do_POST(self):
        self.route("POST")

    def do_DELETE(self):
        self.route("DELETE")

    def do_PATCH(self):
        self.route("PATCH")

    def route(self, method):
        url = urllib.parse.urlsplit(self.path)
        q = dict(urllib.parse.parse_qsl(url.query))
        path = url.path
        try:
            if path.startswith("/_sim/"):
                return self.sim(method, path[6:])
            if not self.authorized():
                return
            if path.startswith(VMI_PREFIX):
                ns, _, rest = path[len(VMI_PREFIX):].partition("/")
                res, _, name = rest.partition("/")
                if res == "virtualmachineinstances":
                    return self.vmis(method, ns, name, q)
            if path.startswith(SUB_PREFIX):
                ns, _, rest = path[len(SUB_PREFIX):].partition("/")
                parts = rest.split("/")
                if len(parts) >= 3 and parts[0] == "virtualmachineinstances":
                    return self.subresource(method, ns, parts[1], "/".join(parts[2:]))
            if path.startswith(CORE_PREFIX):
                ns, _, rest = path[len(CORE_PREFIX):].partition("/")
                res, _, name = rest.partition("/")
                if res == "secrets":
                    return self.secrets(method, ns, name, q)
                if res == "resourcequotas" and method == "GET":
                    return self.quotas(ns)
            self.fail(404, "NotFound", f"the server could not find the requested resource")
        except (BrokenPipeError, ConnectionResetError, ssl.SSLError):
            pass  # the client went away
        except Exception:
            traceback.print_exc()
            self.fail(500, "InternalError", "the simulation failed; see its log")

    # -- VMIs --

    def vmis(self, method, ns, name, q):
        st = self.server.store
        if method == "GET" and not name and q.get("watch") in ("true", "1"):
            return self.watch(ns, q)
        if method == "GET" and not name:
            with st.lock:
                st.lists += 1
                items = [v for (n, _), v in sorted(st.vmis.items())
                         if n == ns and label_match(v, q.get("labelSelector", ""))]
                return self.reply(200, {"apiVersion": "kubevirt.io/v1",
                                        "kind": "VirtualMachineInstanceList",
                                        "metadata": {"resourceVersion": str(st.rv)},
                                        "items": items})
        if method == "POST" and not name:
            return self.create_vmi(ns)
        with st.lock:
            vmi = st.vmis.get((ns, name))
        if vmi is None:
            return self.fail(404, "NotFound",
                             f'virtualmachineinstances.kubevirt.io "{name}" not found',
                             {"name": name, "group": "kubevirt.io",
                              "kind": "virtualmachineinstances"})
        if method == "GET":
            with st.lock:
                return self.reply(200, vmi)
        if method == "DELETE":
            opts = self.body()
            grace = (opts or {}).get("gracePeriodSeconds") if isinstance(opts, dict) else None
            if grace is None:
                grace = vmi["spec"].get("terminationGracePeriodSeconds", 30)
            with st.lock:
                vmi["metadata"]["deletionTimestamp"] = time.strftime("%Y-%m-%dT%H:%M:%SZ")
                vmi["metadata"]["deletionGracePeriodSeconds"] = grace
                st.bump("vmi", "MODIFIED", vmi)
                out = json.loads(json.dumps(vmi))
            threading.Thread(target=self.finish_delete, args=(ns, name, grace),
                             daemon=True).start()
            return self.reply(200, out)
        self.fail(405, "MethodNotAllowed", f"{method} is not supported here")

    def finish_delete(self, ns, name, grace):
        st = self.server.store
        with st.lock:
            guest = st.vms.get((ns, name))
            if guest:
                guest.deleting = True
        if guest and guest.proc:
            guest.stop(grace)
        with st.lock:
            vmi = st.vmis.pop((ns, name), None)
            st.vms.pop((ns, name), None)
            self.release_devices(vmi)
            if vmi is not None:
                st.bump("vmi", "DELETED", vmi)
                uid = vmi["metadata"]["uid"]
                for key, s in list(st.secrets.items()):  # the garbage collector
                    if any(o.get("uid") == uid for o in s["metadata"].get("ownerReferences", [])):
                        del st.secrets[key]
                viewer = st.vnc.pop((ns, name), None)
        if vmi is not None and viewer:
            viewer.close()
        self.schedule_waiting()

    def device_requests(self, vmi):
        devs = vmi["spec"]["domain"].get("devices", {})
        return [d["deviceName"] for d in devs.get("gpus", []) + devs.get("hostDevices", [])]

    def release_devices(self, vmi):
        st = self.server.store
        if vmi is not None and vmi.get("_holds"):
            for r in vmi.pop("_holds"):
                st.devices[r] = st.devices.get(r, 0) + 1

    def create_vmi(self, ns):
        st = self.server.store
        vmi = self.body()
        if not isinstance(vmi, dict):
            return self.fail(400, "BadRequest", "the request body is not a JSON object")
        errors = self.server.schema.validate(vmi, "v1.VirtualMachineInstance")
        name = vmi.get("metadata", {}).get("name", "")
        if errors:
            return self.fail(422, "Invalid",
                             f'VirtualMachineInstance.kubevirt.io "{name}" is invalid: '
                             + "; ".join(errors),
                             {"name": name, "group": "kubevirt.io",
                              "kind": "VirtualMachineInstance",
                              "causes": [{"reason": "FieldValueInvalid", "message": e}
                                         for e in errors]})
        if vmi.get("metadata", {}).get("namespace", ns) != ns:
            return self.fail(400, "BadRequest", "the namespace of the object does not "
                             "match the namespace on the request")
        with st.lock:
            if (ns, name) in st.vmis:
                return self.fail(409, "AlreadyExists",
                                 f'virtualmachineinstances.kubevirt.io "{name}" already exists')
            vmi["metadata"].update({"namespace": ns, "uid": str(uuid.uuid4()),
                                    "creationTimestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ"),
                                    "generation": 1})
            vmi["status"] = {"phase": "Pending"}
            st.vmis[(ns, name)] = vmi
            st.bump("vmi", "ADDED", vmi)
            out = json.loads(json.dumps(vmi))
        self.reply(201, out)
        threading.Thread(target=self.schedule, args=(ns, name), daemon=True).start()

    def schedule(self, ns, name):
        """Pending -> Scheduling -> (Unschedulable | Scheduled -> Running)."""
        st = self.server.store
        time.sleep(0.05)
        with st.lock:
            vmi = st.vmis.get((ns, name))
            if vmi is None or vmi["status"]["phase"] not in ("Pending", "Scheduling"):
                return
            vmi["status"]["phase"] = "Scheduling"
            want = self.device_requests(vmi)
            short = [r for r in set(want) if st.devices.get(r, 0) < want.count(r)]
            if short:
                msg = "0/1 nodes are available: " + ", ".join(
                    f"1 Insufficient {r}" for r in sorted(short)) + \
                    ". preemption: 0/1 nodes are available: 1 No preemption victims " \
                    "found for incoming pod."
                cond = {"type": "PodScheduled", "status": "False",
                        "reason": "Unschedulable", "message": msg}
                if vmi["status"].get("conditions") != [cond]:
                    vmi["status"]["conditions"] = [cond]
                    st.bump("vmi", "MODIFIED", vmi)
                return
            for r in want:
                st.devices[r] -= 1
            vmi["_holds"] = want
            vmi["status"]["conditions"] = [{"type": "PodScheduled", "status": "True"}]
            st.bump("vmi", "MODIFIED", vmi)
            vmi["status"]["phase"] = "Scheduled"
            vmi["status"]["nodeName"] = NODE
            st.bump("vmi", "MODIFIED", vmi)
            guest = Guest(st, (ns, name), vmi)
            st.vms[(ns, name)] = guest
        guest.start()

    def schedule_waiting(self):
        st = self.server.store
        with st.lock:
            waiting = [k for k, v in st.vmis.items() if v["status"]["phase"] == "Scheduling"]
        for ns, name in waiting:
            self.schedule(ns, name)

    def watch(self, ns, q):
        st = self.server.store
        selector = q.get("labelSelector", "")
        since = q.get("resourceVersion", "")
        bookmarks = q.get("allowWatchBookmarks") == "true"
        timeout = min(int(q.get("timeoutSeconds", "1800")), 1800)
        with st.lock:
            st.watch_rvs.append(since)
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        conn = self.connection
        with st.lock:
            st.watch_conns.append(conn)

        def send(ev):
            data = json.dumps(ev).encode() + b"\n"
            self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
            self.wfile.flush()

        end = time.monotonic() + timeout
        try:
            with st.lock:
                oldest = st.history[0][0] if st.history else st.rv + 1
                if since in ("", "0"):
                    pos = st.rv
                    pending = [("ADDED", v) for (n, _), v in sorted(st.vmis.items())
                               if n == ns and label_match(v, selector)]
                else:
                    pos = int(since)
                    pending = []
                    if pos + 1 < oldest and pos < st.rv:
                        pending = None
            if pending is None:
                send({"type": "ERROR", "object": status_body(
                    410, "Expired", f"too old resource version: {since} ({oldest - 1})")})
                return
            for typ, obj in pending:
                send({"type": typ, "object": obj})
            last_bookmark = time.monotonic()
            while time.monotonic() < end:
                with st.lock:
                    if conn not in st.watch_conns:
                        return  # dropped by the test
                    new = [h for h in st.history if h[0] > pos]
                    if not new:
                        st.lock.wait(0.5)
                        new = [h for h in st.history if h[0] > pos]
                    if conn not in st.watch_conns:
                        return
                    rv_now = st.rv
                for rv, typ, kind, obj in new:
                    pos = rv
                    if kind == "vmi" and obj["metadata"]["namespace"] == ns and \
                            label_match(obj, selector):
                        send({"type": typ, "object": obj})
                if bookmarks and time.monotonic() - last_bookmark > 5:
                    send({"type": "BOOKMARK", "object": {
                        "apiVersion": "kubevirt.io/v1", "kind": "VirtualMachineInstance",
                        "metadata": {"resourceVersion": str(max(pos, rv_now))}}})
                    last_bookmark = time.monotonic()
            self.wfile.write(b"0\r\n\r\n")
        finally:
            with st.lock:
                if conn in st.watch_conns:
                    st.watch_conns.remove(conn)
            self.close_connection = True

    # -- subresources --

    def subresource(self, method, ns, name, sub):
        st = self.server.store
        with st.lock:
            vmi = st.vmis.get((ns, name))
            guest = st.vms.get((ns, name))
        if vmi is None:
            return self.fail(404, "NotFound",
                             f'virtualmachineinstances.kubevirt.io "{name}" not found')
        if vmi["status"]["phase"] != "Running" or guest is None:
            return self.fail(400, "BadRequest", "VMI is not running")
        if sub == "vnc/screenshot" and method == "GET":
            path = os.path.join(guest.dir, f"shot-{time.monotonic_ns()}.png")
            reply = guest.qmp({"execute": "screendump",
                               "arguments": {"filename": path, "format": "png"}})
            if "error" in reply:
                return self.fail(500, "InternalError", reply["error"]["desc"])
            with open(path, "rb") as f:
                png = f.read()
            os.unlink(path)
            return self.reply(200, png, "image/png")
        if sub == "vnc" and method == "GET":
            return self.vnc(ns, name, guest)
        self.fail(404, "NotFound", f"no subresource {sub}")

    def vnc(self, ns, name, guest):
        st = self.server.store
        key = self.headers.get("Sec-WebSocket-Key", "")
        protos = [p.strip() for p in self.headers.get("Sec-WebSocket-Protocol", "").split(",")]
        if self.headers.get("Upgrade", "").lower() != "websocket" or not key:
            return self.fail(400, "BadRequest", "websocket: the client is not using the "
                             "websocket protocol")
        if "plain.kubevirt.io" not in protos:
            return self.fail(400, "BadRequest", "websocket: the client offers no "
                             "subprotocol the server supports (plain.kubevirt.io)")
        vnc = socket.socket(socket.AF_UNIX)
        vnc.connect(os.path.join(guest.dir, "vnc.sock"))
        accept = base64.b64encode(hashlib.sha1((key + WS_GUID).encode()).digest()).decode()
        self.send_response(101)
        self.send_header("Upgrade", "websocket")
        self.send_header("Connection", "Upgrade")
        self.send_header("Sec-WebSocket-Accept", accept)
        self.send_header("Sec-WebSocket-Protocol", "plain.kubevirt.io")
        self.end_headers()
        self.wfile.flush()
        self.close_connection = True
        client = self.connection
        with st.lock:  # one VNC connection per VMI: the new one closes the old
            old = st.vnc.get((ns, name))
            st.vnc[(ns, name)] = client
        if old is not None:
            try:
                old.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        # one thread carries both directions: an SSL socket is not for two at once
        buf = b""
        client.settimeout(None)
        try:
            while True:
                ready = [client] if client.pending() else \
                    select.select([client, vnc], [], [], 1)[0]
                if vnc in ready:
                    data = vnc.recv(65536)
                    if not data:
                        break
                    n = len(data)
                    head = bytes([0x82]) + (bytes([n]) if n < 126 else
                                            bytes([126]) + struct.pack(">H", n) if n < 65536
                                            else bytes([127]) + struct.pack(">Q", n))
                    client.sendall(head + data)
                if client not in ready:
                    continue
                data = client.recv(65536)
                if not data:
                    break
                buf += data
                while True:
                    frame = ws_frame(buf)
                    if frame is None:
                        break
                    op, payload, used = frame
                    buf = buf[used:]
                    if op == 0x8:
                        raise EOFError
                    if op == 0x9:
                        client.sendall(bytes([0x8A, len(payload)]) + payload)
                    elif op in (0x0, 0x2):
                        vnc.sendall(payload)
        except (OSError, ValueError, EOFError):
            pass
        vnc.close()
        with st.lock:
            if st.vnc.get((ns, name)) is client:
                del st.vnc[(ns, name)]

    # -- secrets and quotas --

    def secrets(self, method, ns, name, q):
        st = self.server.store
        if method == "POST" and not name:
            s = self.body()
            if not isinstance(s, dict) or s.get("kind") != "Secret":
                return self.fail(400, "BadRequest", "the body is not a Secret")
            n = s.get("metadata", {}).get("name", "")
            with st.lock:
                if (ns, n) in st.secrets:
                    return self.fail(409, "AlreadyExists", f'secrets "{n}" already exists')
                s["metadata"].update({"namespace": ns, "uid": str(uuid.uuid4())})
                s["data"] = {k: base64.b64encode(v.encode()).decode()
                             for k, v in s.pop("stringData", {}).items()}
                st.secrets[(ns, n)] = s
                st.bump("secret", "ADDED", s)
                return self.reply(201, s)
        if method == "GET" and not name:
            with st.lock:
                items = [v for (n, _), v in st.secrets.items()
                         if n == ns and label_match(v, q.get("labelSelector", ""))]
            return self.reply(200, {"kind": "SecretList", "apiVersion": "v1",
                                    "metadata": {"resourceVersion": str(st.rv)},
                                    "items": items})
        with st.lock:
            s = st.secrets.get((ns, name))
            if s is None:
                return self.fail(404, "NotFound", f'secrets "{name}" not found',
                                 {"name": name, "kind": "secrets"})
            if method == "GET":
                return self.reply(200, s)
            if method == "DELETE":
                del st.secrets[(ns, name)]
                return self.reply(200, {"kind": "Status", "apiVersion": "v1",
                                        "status": "Success", "metadata": {}})
        if method == "PATCH":
            if self.headers.get("Content-Type") != "application/merge-patch+json":
                return self.fail(415, "UnsupportedMediaType",
                                 "the body of the request was in an unknown format")
            patch = self.body()
            with st.lock:
                for k, v in (patch or {}).get("metadata", {}).items():
                    s["metadata"][k] = v
                st.bump("secret", "MODIFIED", s)
                return self.reply(200, s)
        self.fail(405, "MethodNotAllowed", f"{method} is not supported here")

    def quotas(self, ns):
        a = self.server.store.args
        items = []
        if a.quota_cpu:
            st = self.server.store
            with st.lock:
                used_cpu = sum(v["spec"]["domain"]["cpu"].get("cores", 1)
                               for (n, _), v in st.vmis.items() if n == ns)
            items.append({"metadata": {"name": "desktops", "namespace": ns},
                          "status": {"hard": {"requests.cpu": a.quota_cpu,
                                              "requests.memory": a.quota_memory},
                                     "used": {"requests.cpu": str(used_cpu),
                                              "requests.memory": "0"}}})
        self.reply(200, {"kind": "ResourceQuotaList", "apiVersion": "v1",
                         "metadata": {}, "items": items})

    # -- test controls --

    def sim(self, method, what):
        st = self.server.store
        if what == "state":
            with st.lock:
                return self.reply(200, {
                    "pids": {f"{k[0]}/{k[1]}": g.proc.pid for k, g in st.vms.items()
                             if g.proc},
                    "watch_rvs": st.watch_rvs, "lists": st.lists, "rv": st.rv,
                    "vmis": sorted(f"{k[0]}/{k[1]}" for k in st.vmis),
                    "secrets": {f"{k[0]}/{k[1]}": v for k, v in st.secrets.items()},
                    "vnc": sorted(f"{k[0]}/{k[1]}" for k in st.vnc)})
        if what == "drop-watches" and method == "POST":
            with st.lock:
                conns, st.watch_conns = st.watch_conns, []
                st.lock.notify_all()
            for c in conns:
                try:
                    c.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
            return self.reply(200, {"dropped": len(conns)})
        if what == "compact" and method == "POST":
            with st.lock:
                st.rv += 10  # what happened meanwhile is no longer kept
                st.history = []
            return self.reply(200, {"rv": st.rv})
        if what == "devices" and method == "POST":
            with st.lock:
                st.devices.update(self.body() or {})
            self.schedule_waiting()
            return self.reply(200, st.devices)
        self.fail(404, "NotFound", f"no control {what}")


class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def finish_request(self, request, client_address):
        # the TLS handshake on the connection's own thread, not the accepting one
        try:
            request = self.ctx.wrap_socket(request, server_side=True)
        except (ssl.SSLError, OSError) as e:
            sys.stderr.write(f"sim: TLS handshake with {client_address}: {e}\n")
            return
        self.RequestHandlerClass(request, client_address, self)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dir", required=True)
    ap.add_argument("--machines", required=True)
    ap.add_argument("--token", default="")
    ap.add_argument("--cert", required=True)
    ap.add_argument("--key", required=True)
    ap.add_argument("--client-ca", default="")
    ap.add_argument("--quota-cpu", default="")
    ap.add_argument("--quota-memory", default="")
    ap.add_argument("--devices", default="{}")
    args = ap.parse_args()
    srv = Server(("127.0.0.1", 0), Handler)
    srv.store = Store(args)
    srv.store.devices = json.loads(args.devices)
    srv.schema = Schema()
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(args.cert, args.key)
    if args.client_ca:
        ctx.load_verify_locations(args.client_ca)
        ctx.verify_mode = ssl.CERT_OPTIONAL
    srv.ctx = ctx

    def bye(*_):
        with srv.store.lock:
            guests = list(srv.store.vms.values())
        for g in guests:
            if g.proc and g.proc.poll() is None:
                os.killpg(g.proc.pid, signal.SIGKILL)
        os._exit(0)

    signal.signal(signal.SIGTERM, bye)
    signal.signal(signal.SIGINT, bye)

    def orphaned(parent=os.getppid()):
        """A test that crashed cannot stop the simulation: it stops itself, and its
        QEMUs, when its parent is gone."""
        while os.getppid() == parent:
            time.sleep(0.5)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=orphaned, daemon=True).start()
    with open(os.path.join(args.dir, "ready.tmp"), "w") as f:
        json.dump({"port": srv.server_address[1], "pid": os.getpid()}, f)
    os.rename(os.path.join(args.dir, "ready.tmp"), os.path.join(args.dir, "ready"))
    srv.serve_forever()


if __name__ == "__main__":
    main()
