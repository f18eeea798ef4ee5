"""Shared pieces of the integration tests: a TAP runner, a real `qdesk serve` in a
temporary state directory, and clients written for the tests — HTTP (with login
cookies and CSRF), WebSocket (masked frames, as browsers send) and RFB.

Nothing here stands in for a component: the service, QEMU and the demo guest are
the real ones; these are only the test's hands.
"""
import base64
import hashlib
import http.client
import json
import os
import re
import shutil
import signal
import socket
import ssl
import struct
import subprocess
import sys
import tempfile
import time
import traceback
import zlib

ROOT = os.environ.get("QDESK_ROOT") or os.path.dirname(os.path.dirname(
    os.path.dirname(os.path.abspath(__file__))))
QDESK = os.path.join(ROOT, "build", "qdesk")
MACHINES = os.path.join(ROOT, "machines")
ARTIFACTS = os.path.join(ROOT, "tests", "artifacts")

# ---- TAP ------------------------------------------------------------------------

_tests = []


def test(fn):
    """Registers a test; it passes unless it raises."""
    _tests.append(fn)
    return fn


def run_tests(teardown=None, setup=None):
    """Runs the registered tests in order, printing TAP; exits with the outcome.
    setup runs first, only when some test is chosen."""
    only = os.environ.get("QDESK_TEST_FILTER")
    chosen = [t for t in _tests if not only or only in t.__name__]
    print(f"1..{len(chosen)}", flush=True)
    if chosen and setup:
        setup()
    failed = 0
    for i, fn in enumerate(chosen, 1):
        start = time.monotonic()
        try:
            fn()
            print(f"ok {i} - {fn.__name__} ({time.monotonic() - start:.1f}s)", flush=True)
        except Exception:  # a failing test must not stop the others
            failed += 1
            for line in traceback.format_exc().splitlines():
                print(f"# {line}")
            print(f"not ok {i} - {fn.__name__}", flush=True)
    if teardown:
        teardown()
    sys.exit(1 if failed else 0)


def eventually(check, timeout, what, interval=0.1):
    """Polls check() until it returns a true value, which is returned."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = check()
            if last:
                return last
        except (OSError, ValueError) as e:
            last = e
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def process_gone(pid):
    """True when pid has exited (a zombie waiting for its reaper counts as gone: a
    QEMU orphaned by a killed service is reaped by init, which may take its time)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except FileNotFoundError:
        return True


def tmpdir(prefix):
    """A new directory under /tmp that QEMU's own user (qdesk-qemu, never root) may
    enter, as it must to reach its run directory and the images."""
    d = tempfile.mkdtemp(prefix=prefix, dir="/tmp")
    os.chmod(d, 0o755)
    return d


def drop_firewall_table(table):
    """Removes an nftables table a test's qdesk made (there is none when no guest
    ran on the default network)."""
    subprocess.run(["nft", "delete", "table", "inet", table], capture_output=True)


def leftovers(state):
    """What is left in the run directories of a state directory."""
    run = os.path.join(state, "run")
    return sorted(os.listdir(run)) if os.path.isdir(run) else []

# ---- the service ---------------------------------------------------------------


class Service:
    """A real `qdesk serve` on a free loopback port with its own state directory."""

    def __init__(self, conf="", machines=MACHINES, name="svc", tls=False):
        # Short paths: unix socket names have a length limit.
        self.dir = tmpdir(f"qd-{name}-")
        self.state = os.path.join(self.dir, "state")
        self.port = free_port()
        # the nftables table that keeps this service's guests off the host: one of
        # its own, removed with it
        self.table = f"qdt_{os.getpid()}_{os.path.basename(self.dir)[-8:].replace('-', '_')}"
        self.tls = tls
        self.base = f"{'https' if tls else 'http'}://127.0.0.1:{self.port}"
        self.conf = os.path.join(self.dir, "qdesk.conf")
        self.logpath = os.path.join(self.dir, "serve.log")
        with open(self.conf, "w") as f:
            f.write(f"[server]\nlisten = 127.0.0.1:{self.port}\n"
                    f"www = {os.path.join(ROOT, 'www')}\n"
                    f"[paths]\nmachines = {machines}\nstate = {self.state}\n"
                    f"[qemu]\nstop_grace_s = 10s\n"
                    f"[usernet]\nfirewall_table = {self.table}\n"
                    f"[limits]\nmax_load_per_core = 100\nmin_mem_available_mb = 64M\n"
                    f"max_sessions_per_user = 8\nuser_memory_fraction = 0.9\n")
            if tls:  # a throw-away self-signed certificate
                subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes",
                                "-keyout", f"{self.dir}/key.pem", "-out",
                                f"{self.dir}/cert.pem", "-days", "2", "-subj",
                                "/CN=localhost"], check=True, capture_output=True)
                f.write(f"[server]\ntls_cert = {self.dir}/cert.pem\n"
                        f"tls_key = {self.dir}/key.pem\n")
            f.write(conf)
        self.proc = None

    def qdesk(self, *args, input=None, timeout=60):
        """Runs a qdesk command against this service's config."""
        return subprocess.run([QDESK, "-c", self.conf, *args], capture_output=True,
                              text=True, input=input, timeout=timeout)

    def start(self):
        log = open(self.logpath, "a")
        self.proc = subprocess.Popen([QDESK, "-c", self.conf, "serve"], stdout=log,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        eventually(lambda: self.proc.poll() is not None or self.get("/healthz")[0] == 200,
                   10, "the service to answer /healthz")
        if self.proc.poll() is not None:
            raise AssertionError(f"qdesk serve exited: {self.log()}")
        return self

    def stop(self, sig=signal.SIGTERM):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(timeout=20)
        self.proc = None

    def kill9(self):
        self.stop(signal.SIGKILL)

    def log(self):
        with open(self.logpath) as f:
            return f.read()

    def close(self):
        """Stops every session and the service, then removes the state."""
        if self.proc and self.proc.poll() is None:
            self.api("DELETE", "/api/v1/sessions", control=True)
            try:
                eventually(lambda: not self.live_sessions(), 40, "every session to stop")
            finally:
                self.stop()
        drop_firewall_table(self.table)
        shutil.rmtree(self.dir, ignore_errors=True)

    # -- HTTP --

    def request(self, method, path, body=None, headers=None, cookie=None):
        """Returns (status, headers, raw body)."""
        if self.tls:
            ctx = ssl.create_default_context()
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
            conn = http.client.HTTPSConnection("127.0.0.1", self.port, timeout=30, context=ctx)
        else:
            conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        hdrs = dict(headers or {})
        if cookie:
            hdrs["Cookie"] = cookie
        data = None
        if body is not None:
            data = body if isinstance(body, (bytes, str)) else json.dumps(body)
            hdrs.setdefault("Content-Type", "application/json")
        conn.request(method, path, body=data, headers=hdrs)
        resp = conn.getresponse()
        raw = resp.read()
        conn.close()
        return resp.status, dict(resp.getheaders()), raw

    def get(self, path, **kw):
        status, _, raw = self.request("GET", path, **kw)
        return status, raw

    def api(self, method, path, body=None, login=None, csrf=True, control=False):
        """Calls the API as a browser page would (CSRF header, login cookie) or, with
        control=True, as the CLI does over the control socket. Returns (status,
        parsed JSON or text)."""
        if control:
            return self._control(method, path, body)
        headers = {}
        if csrf and method not in ("GET", "HEAD"):
            headers["X-CSRF-Token"] = login.csrf if login else "qdesk"
        status, _, raw = self.request(method, path, body, headers,
                                      cookie=login.cookie if login else None)
        try:
            return status, json.loads(raw)
        except ValueError:
            return status, raw.decode(errors="replace")

    def _control(self, method, path, body):
        sock = socket.socket(socket.AF_UNIX)
        sock.connect(os.path.join(self.state, "control.sock"))
        conn = http.client.HTTPConnection("localhost")
        conn.sock = sock
        conn.request(method, path, body=json.dumps(body) if body is not None else None,
                     headers={"Content-Type": "application/json"})
        resp = conn.getresponse()
        raw = resp.read()
        conn.close()
        return resp.status, json.loads(raw) if raw else None

    def login(self, user, password):
        status, headers, raw = self.request(
            "POST", "/api/v1/login", {"user": user, "password": password},
            {"X-CSRF-Token": "login"})
        if status != 200:
            raise AssertionError(f"login of {user} gave {status}: {raw!r}")
        cookie = headers["Set-Cookie"].split(";")[0]
        return Login(user, cookie, json.loads(raw)["csrf"])

    # -- sessions --

    def create(self, login=None, expect=201, **fields):
        fields.setdefault("machine", "demo-kernel")
        status, body = self.api("POST", "/api/v1/sessions", fields, login=login)
        assert status == expect, f"create {fields} gave {status}: {body}"
        return body

    def session(self, sid, login=None):
        status, body = self.api("GET", f"/api/v1/sessions/{sid}", login=login)
        assert status == 200, f"session {sid}: {status} {body}"
        return body

    def live_sessions(self):
        status, body = self.api("GET", "/api/v1/sessions", control=True)
        return [s for s in body if s["state"] not in ("stopped", "failed")]

    def wait_state(self, sid, state, timeout=30, login=None):
        return eventually(lambda: self.session(sid, login)["state"] == state and
                          self.session(sid, login), timeout, f"session {sid} to be {state}")

    def serial(self, sid, login=None):
        """The guest's console so far, with the tty's CR LF line ends made LF."""
        status, body = self.api("GET", f"/api/v1/sessions/{sid}/serial", login=login)
        return body.replace("\r\n", "\n") if status == 200 else ""

    def wait_serial(self, sid, pattern, timeout=30, login=None):
        """Waits for a line matching the regular expression in the guest's console."""
        rx = re.compile(pattern, re.M)
        try:
            return eventually(lambda: rx.search(self.serial(sid, login)), timeout,
                              f"/{pattern}/ on the serial console of {sid}").group(0)
        except AssertionError as e:
            tail = "\n".join(self.serial(sid, login).splitlines()[-12:])
            raise AssertionError(f"{e}\nthe console ends with:\n{tail}") from None

    def boot(self, login=None, **fields):
        """Creates a session and waits until its desktop is drawn and its pointer (the
        USB tablet, which the guest finds a moment later) takes input."""
        s = self.create(login=login, **fields)
        self.wait_serial(s["id"], r"^QDESK-DEMO-READY", 60, login=login)
        self.wait_serial(s["id"], r"^QDESK-INPUT .*Tablet", 20, login=login)
        return self.session(s["id"], login)


class Pool:
    """Services a test starts, all closed (with their VMs) when it ends:

        pool = Pool()
        @pool.test
        def something():
            svc = pool.service("[limits]\\nmax_sessions = 1\\n")
    """

    def __init__(self):
        self.services = []

    def service(self, conf="", start=True, **kw):
        svc = Service(conf, **kw)
        self.services.append(svc)
        return svc.start() if start else svc

    def close(self):
        while self.services:
            try:
                self.services.pop().close()
            except Exception as e:  # keep closing the others
                print(f"# closing a service: {e}")

    def test(self, fn):
        def run():
            try:
                fn()
            finally:
                self.close()
        run.__name__ = fn.__name__
        return test(run)


class Login:
    def __init__(self, user, cookie, csrf):
        self.user, self.cookie, self.csrf = user, cookie, csrf

# ---- WebSocket and RFB clients ---------------------------------------------------


class WebSocket:
    """A WebSocket client as a browser is one: masked frames, the RFC handshake."""

    def __init__(self, port, path, protocol="binary", host="127.0.0.1", tls=False):
        self.sock = socket.create_connection((host, port), timeout=20)
        if tls:  # the tests' services use a throw-away self-signed certificate
            ctx = ssl.create_default_context()
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
            self.sock = ctx.wrap_socket(self.sock, server_hostname=host)
        key = base64.b64encode(os.urandom(16)).decode()
        req = (f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
               f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
               f"Sec-WebSocket-Version: 13\r\n")
        if protocol:
            req += f"Sec-WebSocket-Protocol: {protocol}\r\n"
        self.sock.sendall((req + "\r\n").encode())
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = self.sock.recv(4096)
            if not chunk:
                raise ConnectionError(f"closed during the handshake: {head!r}")
            head += chunk
        head, self.buf = head.split(b"\r\n\r\n", 1)
        lines = head.decode().split("\r\n")
        self.status = int(lines[0].split()[1])
        self.headers = {l.split(":", 1)[0].lower(): l.split(":", 1)[1].strip()
                        for l in lines[1:] if ":" in l}
        if self.status == 101:
            want = base64.b64encode(hashlib.sha1(
                (key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").encode()).digest()).decode()
            assert self.headers.get("sec-websocket-accept") == want, "bad accept key"
        self.closed = None   # (code, reason) once the server closed
        self.pending = b""   # payload bytes of binary messages not yet read

    def send_frame(self, opcode, payload, fin=True, mask=True):
        head = bytes([(0x80 if fin else 0) | opcode])
        n = len(payload)
        mbit = 0x80 if mask else 0
        if n < 126:
            head += bytes([mbit | n])
        elif n < 65536:
            head += bytes([mbit | 126]) + struct.pack(">H", n)
        else:
            head += bytes([mbit | 127]) + struct.pack(">Q", n)
        if mask:
            key = os.urandom(4)
            payload = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
            head += key
        self.sock.sendall(head + payload)

    def send(self, data):
        self.send_frame(0x2, data)

    def _need(self, n):
        while len(self.buf) < n:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("the server closed the connection")
            self.buf += chunk
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def recv_frame(self):
        b0, b1 = self._need(2)
        n = b1 & 0x7F
        if n == 126:
            n = struct.unpack(">H", self._need(2))[0]
        elif n == 127:
            n = struct.unpack(">Q", self._need(8))[0]
        assert not b1 & 0x80, "the server must not mask its frames"
        return b0 & 0x0F, self._need(n)

    def read(self, n):
        """Reads n bytes of the binary stream, answering pings on the way."""
        while len(self.pending) < n:
            op, payload = self.recv_frame()
            if op in (0x0, 0x1, 0x2):
                self.pending += payload
            elif op == 0x9:
                self.send_frame(0xA, payload)
            elif op == 0x8:
                code = struct.unpack(">H", payload[:2])[0] if len(payload) >= 2 else 1005
                self.closed = (code, payload[2:].decode(errors="replace"))
                raise ConnectionError(f"closed by the server: {self.closed}")
        out, self.pending = self.pending[:n], self.pending[n:]
        return out

    def wait_closed(self, timeout=10):
        """Reads until the server closes; returns (code, reason), or (None, '') when
        the TCP connection ended without a close frame."""
        self.sock.settimeout(timeout)
        try:
            while True:
                self.read(1 << 30)
        except ConnectionError:
            return self.closed or (None, "")

    def close(self):
        try:
            self.send_frame(0x8, struct.pack(">H", 1000))
        except OSError:
            pass
        self.sock.close()


class RFB:
    """An RFB 3.8 client over any stream with read(n) and send(data)."""

    def __init__(self, stream, shared=True):
        self.s = stream
        version = self.s.read(12)
        assert version.startswith(b"RFB 003."), version
        self.s.send(b"RFB 003.008\n")
        n = self.s.read(1)[0]
        types = self.s.read(n)
        assert 1 in types, f"the server offers no 'None' security: {types}"
        self.s.send(b"\x01")
        assert struct.unpack(">I", self.s.read(4))[0] == 0, "security failed"
        self.s.send(b"\x01" if shared else b"\x00")
        self.width, self.height = struct.unpack(">HH", self.s.read(4))
        self.pixfmt = self.s.read(16)
        self.name = self.s.read(struct.unpack(">I", self.s.read(4))[0]).decode()
        # 32-bit true colour, little endian, and raw encoding only
        self.s.send(struct.pack(">BxxxBBBBHHHBBBxxx", 0, 32, 24, 0, 1, 255, 255, 255,
                                16, 8, 0))
        self.s.send(struct.pack(">BxHi", 2, 1, 0))

    def key(self, keysym):
        self.s.send(struct.pack(">BBxxI", 4, 1, keysym))
        self.s.send(struct.pack(">BBxxI", 4, 0, keysym))

    def click(self, x, y, button=1):
        self.s.send(struct.pack(">BBHH", 5, 0, x, y))
        self.s.send(struct.pack(">BBHH", 5, 1 << (button - 1), x, y))
        self.s.send(struct.pack(">BBHH", 5, 0, x, y))

    def framebuffer(self, timeout=20):
        """Asks for the whole screen and returns it as rows of (r, g, b)."""
        self.s.send(struct.pack(">BBHHHH", 3, 0, 0, 0, self.width, self.height))
        pixels = bytearray(self.width * self.height * 4)
        covered = 0
        deadline = time.monotonic() + timeout
        while covered < self.width * self.height and time.monotonic() < deadline:
            mtype = self.s.read(1)[0]
            if mtype == 0:
                self.s.read(1)
                for _ in range(struct.unpack(">H", self.s.read(2))[0]):
                    x, y, w, h, enc = struct.unpack(">HHHHi", self.s.read(12))
                    if enc == -223:  # DesktopSize
                        self.width, self.height = w, h
                        pixels = bytearray(w * h * 4)
                        continue
                    assert enc == 0, f"unexpected encoding {enc}"
                    data = self.s.read(w * h * 4)
                    for row in range(h):
                        off = ((y + row) * self.width + x) * 4
                        pixels[off:off + w * 4] = data[row * w * 4:(row + 1) * w * 4]
                    covered += w * h
            elif mtype == 2:  # bell
                continue
            elif mtype == 3:  # cut text
                self.s.read(3)
                self.s.read(struct.unpack(">I", self.s.read(4))[0])
            else:
                raise AssertionError(f"unexpected server message {mtype}")
        return pixels


def distinct_colours(pixels, step=97):
    """How many different colours a sample of a 32-bit framebuffer holds."""
    return len({bytes(pixels[i:i + 3]) for i in range(0, len(pixels) - 3, 4 * step)})


def png_pixels(data):
    """Decodes an 8-bit RGB or RGBA PNG into (width, height, rows of bytes)."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, idat, width = 8, b"", 0
    while pos < len(data):
        n, kind = struct.unpack(">I4s", data[pos:pos + 8])
        chunk = data[pos + 8:pos + 8 + n]
        if kind == b"IHDR":
            width, height, depth, colour = struct.unpack(">IIBB", chunk[:10])
            assert depth == 8 and colour in (2, 6), "only 8-bit RGB(A) PNGs"
            bpp = 3 if colour == 2 else 4
        elif kind == b"IDAT":
            idat += chunk
        pos += 12 + n
    raw = zlib.decompress(idat)
    stride = width * bpp
    rows, prev = [], bytearray(stride)
    for y in range(height):
        f, line = raw[y * (stride + 1)], bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        for i in range(stride):
            a = line[i - bpp] if i >= bpp else 0
            b, c = prev[i], prev[i - bpp] if i >= bpp else 0
            if f == 1:
                line[i] = (line[i] + a) & 0xFF
            elif f == 2:
                line[i] = (line[i] + b) & 0xFF
            elif f == 3:
                line[i] = (line[i] + (a + b) // 2) & 0xFF
            elif f == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 0xFF
        rows.append(bytes(line))
        prev = line
    return width, height, bpp, rows


def keysym(ch):
    """The X keysym of a printable ASCII character."""
    return ord(ch)


# Linux input keycodes of the letters, as the demo guest prints them.
LINUX_KEYCODE = dict(zip("qwertyuiop", range(16, 26)))
LINUX_KEYCODE.update(zip("asdfghjkl", range(30, 39)))
LINUX_KEYCODE.update(zip("zxcvbnm", range(44, 51)))
