"""
The security review's probes (issue 19), against real C{python -m gostrelay}
processes on 127.0.0.1:

    python3 bench/security_probes.py                 # everything (about 1 minute)
    python3 bench/security_probes.py descriptors --limit 512 --clients 600
    python3 bench/security_probes.py ssrf websocket tls kcp

Each check prints C{ok} or C{FAIL} with what it saw; the exit status is the
number of failed checks.  Needs Linux (/proc, C{ss}) and nothing beyond the
test dependencies.  The clients are plain blocking sockets on threads, so
that nothing of gostrelay's (or Twisted's) is on the probing side.

  descriptors  (item 0) a tcp forwarder with a relay hop and the relay
               server, both with C{RLIMIT_NOFILE} lowered in the child;
               --clients clients each echo --size bytes and hold their
               connection until every client has an outcome, so both run
               out of descriptors.  Every client is served or closed (none
               hangs), and 5 s after they leave both processes are back to
               their descriptors at start, no socket in CLOSE-WAIT, no
               traceback.  --held descriptors opened in the children before
               they start make C{pipe2} fail (EMFILE) before sockets do.
  ssrf         (items 1, 2, 3, 7, 8) C{denyPrivate} and C{bypass=private}
               on relay TCP/UDP CONNECT in every spelling of 127.0.0.1
               (open and closed ports answer alike, nothing dialed), SOCKS5
               and HTTP entries, auto/http/socks5 C{denyPrivate}, UDP BIND
               datagrams both ways, a chain whose first hop is on 127.0.0.1
               (target checked, not hop), forward mode, SOCKS5 UDP; then
               the same probes without a guard do reach the targets
               (controls).
  websocket    (item 4) an endless opening handshake for 13 s beside a
               measured client; a 4 MiB incomplete frame; fragments past
               64 KiB; a 60000-byte message still relayed.
  tls          (item 5) tls/wss listeners with maxConns, maxConnsPerIP,
               rlimiter and a YAML climiter: over the limit a connection
               gets no TLS byte; no traceback; one log line a second.
  kcp          (item 6) one spoofed 52-byte KCP datagram: what comes back in
               --kcp-wait seconds (30); 1,100 first datagrams from distinct
               ports of one address, then from 1,100 addresses: server CPU,
               a live session through a kcp hop survives.
  low          (items 8-12) start-up warnings, bad names fail at once, a
               BIND port out of range, escaped log lines, UDP sessions per
               source address.
"""

from __future__ import annotations

import argparse
import base64
import os
import re
import select
import shutil
import signal
import socket
import ssl
import struct
import subprocess
import sys
import tempfile
import threading
import time
from typing import Any

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from gostrelay.wire.kcp import arq, crypt, fec  # noqa: E402
from gostrelay.wire.relay import (  # noqa: E402
    FLAG_UDP,
    AddrFeature,
    Command,
    Network,
    NetworkFeature,
    Request,
    UserAuthFeature,
    connectRequest,
    decodeResponse,
)
from gostrelay.wire.udpframe import encodeLengthFrame, encodeTunnelDatagram  # noqa: E402

LISTENING = re.compile(r"listening on (\S+):(\d+)")
CLK_TCK = os.sysconf("SC_CLK_TCK")
FAILS: list[str] = []


def check(cond: bool, what: str) -> None:
    print(("  ok   " if cond else "  FAIL ") + what, flush=True)
    if not cond:
        FAILS.append(what)


class Child:
    """
    One gostrelay process whose output is kept (for the listening ports and
    the log lines the probes look at).  C{pre} is Python run in the child
    before gostrelay starts (to lower its descriptor limit).
    """

    children: list[Child] = []
    home = tempfile.mkdtemp(prefix="gostrelay-probes-")

    def __init__(self, args: list[str], name: str, pre: str | None = None, twistd: bool = False) -> None:
        env = dict(os.environ, PYTHONPATH=ROOT, PYTHONUNBUFFERED="1", HOME=self.home)
        if twistd:
            cmd = [sys.executable, "-c", "from twisted.scripts.twistd import run; run()", "-n", "--pidfile=", "relay", *args]
        elif pre:
            run = "import runpy, sys\nsys.argv = ['gostrelay'] + sys.argv[1:]\nrunpy.run_module('gostrelay', run_name='__main__', alter_sys=True)\n"
            cmd = [sys.executable, "-c", pre + "\n" + run, *args]
        else:
            cmd = [sys.executable, "-m", "gostrelay", *args]
        self.name = name
        self.lines: list[str] = []
        self.ports: list[int] = []
        self.p = subprocess.Popen(cmd, cwd=self.home, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace")
        self.children.append(self)
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.p.stdout is not None
        for line in self.p.stdout:
            self.lines.append(line)
            m = LISTENING.search(line)
            if m:
                self.ports.append(int(m.group(2)))

    def waitPorts(self, n: int = 1, timeout: float = 20) -> list[int]:
        end = time.time() + timeout
        while len(self.ports) < n:
            if time.time() > end or self.p.poll() is not None:
                raise RuntimeError(f"{self.name} did not start:\n{self.out}")
            time.sleep(0.05)
        return self.ports

    @property
    def out(self) -> str:
        return "".join(self.lines)

    def fds(self) -> int:
        return len(os.listdir(f"/proc/{self.p.pid}/fd"))

    def cpu(self) -> float:
        with open(f"/proc/{self.p.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLK_TCK

    def rssMiB(self) -> int:
        with open(f"/proc/{self.p.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS"):
                    return int(line.split()[1]) // 1024
        return 0

    def bad(self) -> list[str]:
        return [line.strip() for line in self.lines if "Traceback" in line or "Unhandled" in line or "#critical" in line]

    def stop(self) -> None:
        if self.p.poll() is None:
            self.p.send_signal(signal.SIGTERM)
            try:
                self.p.wait(5)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait()

    @classmethod
    def stopAll(cls) -> None:
        for child in cls.children:
            child.stop()
        cls.children.clear()


class EchoServer:
    """
    A threaded TCP echo on 127.0.0.1 that counts connections (and keeps
    nothing it echoes).
    """

    def __init__(self) -> None:
        self.s = socket.socket()
        self.s.bind(("127.0.0.1", 0))
        self.s.listen(1024)
        self.port = self.s.getsockname()[1]
        self.accepts = 0
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self) -> None:
        while True:
            try:
                conn, _ = self.s.accept()
            except OSError:
                return
            self.accepts += 1
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        try:
            while data := conn.recv(65536):
                conn.sendall(data)
        except OSError:
            pass
        conn.close()


class UDPServer:
    """
    A UDP server on 127.0.0.1 that records what it gets and answers it.
    """

    def __init__(self) -> None:
        self.s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.s.bind(("127.0.0.1", 0))
        self.port = self.s.getsockname()[1]
        self.got: list[tuple[bytes, Any]] = []
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self) -> None:
        while True:
            try:
                data, addr = self.s.recvfrom(65536)
            except OSError:
                return
            self.got.append((data, addr))
            self.s.sendto(b"reply:" + data, addr)


def recvExact(s: socket.socket, n: int, timeout: float = 5) -> bytes:
    s.settimeout(timeout)
    buf = b""
    while len(buf) < n:
        data = s.recv(n - len(buf))
        if not data:
            break
        buf += data
    return buf


def relayResponse(s: socket.socket, timeout: float = 20) -> tuple[int | None, bytes]:
    head = recvExact(s, 4, timeout)
    if len(head) < 4:
        return None, head
    body = recvExact(s, int.from_bytes(head[2:4], "big"), timeout)
    return head[1], head + body


def hostPort(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def closedPort() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return int(port)


# -- item 0


def descriptors(limit: int, clients: int, size: int, held: int) -> None:
    print(f"descriptors: RLIMIT_NOFILE {limit} ({held} held), {clients} clients x {size} bytes held open")
    pre = (
        "import os, resource\n"
        f"resource.setrlimit(resource.RLIMIT_NOFILE, ({limit}, {limit}))\n"
        f"held = [os.open('/dev/null', os.O_RDONLY) for _ in range({held})]"
    )
    echo = EchoServer()
    server = Child(["-L", "relay://127.0.0.1:0"], "server", pre=pre)
    sport = server.waitPorts()[0]
    fwd = Child(["-L", f"tcp://127.0.0.1:0/127.0.0.1:{echo.port}", "-F", f"relay://127.0.0.1:{sport}"], "forwarder", pre=pre)
    fport = fwd.waitPorts()[0]
    time.sleep(0.5)
    base = (server.fds(), fwd.fds())
    results: dict[int, str] = {}
    lock = threading.Lock()
    everyone = threading.Event()

    def outcome(i: int, what: str) -> None:
        with lock:
            results[i] = what
            if len(results) == clients:
                everyone.set()

    def client(i: int) -> None:
        try:
            s = socket.create_connection(("127.0.0.1", fport), timeout=60)
        except OSError:
            outcome(i, "connect failed")
            return
        s.settimeout(60)
        got = 0

        def write() -> None:
            try:
                for _ in range(size // 16384):
                    s.sendall(b"x" * 16384)
            except OSError:
                pass

        threading.Thread(target=write, daemon=True).start()
        try:
            while got < size:
                data = s.recv(65536)
                if not data:
                    break
                got += len(data)
            what = "served" if got == size else "closed"
        except TimeoutError:
            what = "HUNG"
        except OSError:
            what = "reset"
        outcome(i, what)
        everyone.wait(120)
        s.close()

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    started = time.time()
    for t in threads:
        t.start()
    peak = (0, 0)
    while True:
        peak = (max(peak[0], server.fds()), max(peak[1], fwd.fds()))
        if everyone.wait(0.05):
            break
    for t in threads:
        t.join()
    counts = {k: list(results.values()).count(k) for k in sorted(set(results.values()))}
    print(f"  outcomes after {time.time() - started:.1f} s: {counts}; descriptors at start {base}, peak {peak}")
    check("HUNG" not in counts, "no client hung")
    time.sleep(5)
    after = (server.fds(), fwd.fds())
    check(after[0] <= base[0] and after[1] <= base[1], f"5 s after the clients left: descriptors {after}, at start {base}")
    ss = subprocess.run(["ss", "-tanp"], capture_output=True, text=True).stdout
    waiting = [line for line in ss.splitlines() if "CLOSE-WAIT" in line and (f"pid={server.p.pid}," in line or f"pid={fwd.p.pid}," in line)]
    check(not waiting, f"no socket in CLOSE-WAIT ({len(waiting)})")
    for c in (server, fwd):
        check(not c.bad(), f"{c.name}: no traceback {c.bad()[:2]}")
        kinds = sorted({m.group(0) for m in re.finditer(r"splice: no kernel pipe[^;]*|EMFILE recovery", c.out)})
        print(f"  {c.name} logged: {kinds}")
    Child.stopAll()


# -- items 1, 2, 3, 7, 8

LOOPBACK = ["127.0.0.1", "127.1", "2130706433", "0x7f.1", "0177.0.0.1", "0", "127.000.000.001", "localhost", "", "::ffff:127.0.0.1", "0x7f000001", "LOCALHOST.", "::1"]
USER = ("alice", "pw")


def relayConnect(port: int, target: str, network: str = "tcp", data: bytes = b"probe") -> int | None:
    s = socket.create_connection(("127.0.0.1", port), timeout=20)
    s.sendall(connectRequest(target, network, username=USER[0], password=USER[1]).encode())
    status, _ = relayResponse(s)
    if status == 0 and data:
        s.sendall(encodeLengthFrame(data) if network == "udp" else data)
        s.settimeout(1)
        try:
            s.recv(100)
        except OSError:
            pass
    s.close()
    return status


def socks5Connect(port: int, host: str, tport: int) -> int | None:
    s = socket.create_connection(("127.0.0.1", port), timeout=20)
    s.sendall(b"\x05\x01\x00")
    recvExact(s, 2)
    name = host.encode()
    s.sendall(b"\x05\x01\x00\x03" + bytes([len(name)]) + name + struct.pack(">H", tport))
    reply = recvExact(s, 2, 20)
    if len(reply) == 2 and reply[1] == 0:
        s.sendall(b"probe")
    s.close()
    return reply[1] if len(reply) == 2 else None


def httpConnect(port: int, host: str, tport: int) -> str:
    s = socket.create_connection(("127.0.0.1", port), timeout=20)
    target = hostPort(host, tport)
    s.sendall(f"CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n".encode())
    s.settimeout(20)
    line = s.recv(200).split(b"\r\n")[0].decode(errors="replace")
    if " 200" in line:
        s.sendall(b"probe")
    s.close()
    return line


def udpBind(port: int) -> tuple[socket.socket, int | None, int | None]:
    s = socket.create_connection(("127.0.0.1", port), timeout=20)
    features = [UserAuthFeature(*USER), NetworkFeature(Network.UDP), AddrFeature.fromHostPort("0.0.0.0", 0)]
    s.sendall(Request(int(Command.BIND) | FLAG_UDP, tuple(features)).encode())
    status, raw = relayResponse(s)
    bound = [f for f in decodeResponse(raw).features if isinstance(f, AddrFeature)] if status == 0 else []
    return s, status, bound[0].port if bound else None


def socks5UDP(port: int, host: str, tport: int, data: bytes) -> None:
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    s.sendall(b"\x05\x01\x00")
    recvExact(s, 2)
    s.sendall(b"\x05\x03\x00\x01\x00\x00\x00\x00\x00\x00")
    reply = recvExact(s, 10)
    check(len(reply) == 10 and reply[1] == 0, f"SOCKS5 UDP ASSOCIATE granted ({reply!r})")
    relay = ("127.0.0.1", struct.unpack(">H", reply[8:10])[0])
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    name = host.encode()
    u.sendto(b"\x00\x00\x00\x03" + bytes([len(name)]) + name + struct.pack(">H", tport) + data, relay)
    time.sleep(1)
    u.close()
    s.close()


def ssrf() -> None:
    print("ssrf")
    echo, udp, closed = EchoServer(), UDPServer(), closedPort()
    deny = Child(["-L", "relay://alice:pw@127.0.0.1:0?denyPrivate=true&bind=true&dialTimeout=3s"], "denyPrivate")
    dport = deny.waitPorts()[0]
    guarded = Child(
        [
            "-L", "relay://alice:pw@127.0.0.1:0?bypass=private&bind=true",
            "-L", "socks5://127.0.0.1:0?bypass=private&udp=true",
            "-L", "http://127.0.0.1:0?bypass=private",
            "-L", "socks5://127.0.0.1:0?denyPrivate=true",
            "-L", "http://127.0.0.1:0?denyPrivate=true",
            "-L", "auto://127.0.0.1:0?denyPrivate=true",
        ],
        "guarded",
    )
    bypassRelay, bypassSocks, bypassHTTP, denySocks, denyHTTP, denyAuto = guarded.waitPorts(6)

    print(" item 2: denyPrivate, every spelling, relay TCP and UDP CONNECT")
    for host in LOOPBACK:
        for network in ("tcp", "udp"):
            opened = relayConnect(dport, hostPort(host, echo.port), network)
            shut = relayConnect(dport, hostPort(host, closed), network)
            check(opened == 3 and shut == 3, f"denyPrivate {network} {host!r}: open port {opened}, closed port {shut}")
    print(" item 2: bypass=private via relay, SOCKS5, HTTP")
    for host in LOOPBACK:
        check(relayConnect(bypassRelay, hostPort(host, echo.port)) == 3, f"relay bypass=private {host!r}")
        check(socks5Connect(bypassSocks, host, echo.port) == 2, f"socks5 bypass=private {host!r}")
        line = httpConnect(bypassHTTP, host, echo.port)
        check(" 403" in line or (host == "" and " 400" in line), f"http bypass=private {host!r}: {line}")
    print(" item 8: denyPrivate on socks5, http, auto entries")
    for host in ("127.1", "localhost", "2130706433", "10.1.2.3", "169.254.169.254"):
        check(socks5Connect(denySocks, host, echo.port) == 2, f"socks5 denyPrivate {host!r}")
        check(" 403" in httpConnect(denyHTTP, host, echo.port), f"http denyPrivate {host!r}")
        check(" 403" in httpConnect(denyAuto, host, echo.port), f"auto (http) denyPrivate {host!r}")
        check(socks5Connect(denyAuto, host, echo.port) == 2, f"auto (socks5) denyPrivate {host!r}")
    check(echo.accepts == 0 and udp.got == [], f"the loopback targets saw {echo.accepts} connections, {len(udp.got)} datagrams")

    print(" item 1: UDP BIND datagrams both ways")
    for name, port in (("denyPrivate", dport), ("bypass=private", bypassRelay)):
        s, status, bound = udpBind(port)
        check(status == 0, f"{name}: UDP BIND granted (status {status}, port {bound})")
        for host in ("127.0.0.1", "localhost", "127.1", "2130706433", "0", "::ffff:127.0.0.1"):
            s.sendall(encodeTunnelDatagram(host, udp.port, b"leak"))
        time.sleep(1)
        check(udp.got == [], f"{name}: {len(udp.got)} datagrams reached the loopback server")
        if bound:
            udp.s.sendto(b"inbound", ("127.0.0.1", bound))
            s.settimeout(1)
            try:
                got = s.recv(100)
            except OSError:
                got = b""
            check(b"inbound" not in got, f"{name}: a datagram from 127.0.0.1 to the bound port is not delivered")
        s.close()
    udp.got.clear()

    print(" item 3: a chain whose first hop is on 127.0.0.1")
    hop = Child(["-L", "relay://127.0.0.1:0?dialTimeout=2s"], "hop")
    hport = hop.waitPorts()[0]
    chained = Child(["-L", "relay://alice:pw@127.0.0.1:0?denyPrivate=true&dialTimeout=3s", "-F", f"relay://127.0.0.1:{hport}"], "chained")
    cport = chained.waitPorts()[0]
    status = relayConnect(cport, "192.88.99.1:9", data=b"")
    check(status != 3 and "denyPrivate" not in chained.out, f"a public target through the hop is not refused as private (status {status})")
    for host in ("localhost", "127.1", "127.0.0.1", "2130706433", ""):
        for network in ("tcp", "udp"):
            status = relayConnect(cport, hostPort(host, echo.port if network == "tcp" else udp.port), network)
            check(status == 3, f"chain {network} CONNECT {host!r}: {status}")

    print(" forward mode with denyPrivate")
    for target in (f"127.0.0.1:{echo.port}", f"localhost:{echo.port}", f"127.1:{echo.port}", f":{echo.port}"):
        forward = Child(["-L", f"relay://127.0.0.1:0/{target}?denyPrivate=true"], "forward mode")
        fport = forward.waitPorts()[0]
        for network in ("tcp", "udp"):
            s = socket.create_connection(("127.0.0.1", fport), timeout=10)
            s.sendall(connectRequest("", network).encode())
            status, _ = relayResponse(s)
            s.close()
            check(status == 3, f"forward mode to {target} ({network}): {status}")
        forward.stop()

    print(" item 7: SOCKS5 UDP honours the bypass")
    for host in ("127.0.0.1", "localhost", "127.1"):
        socks5UDP(bypassSocks, host, udp.port, b"leak")
    time.sleep(0.5)
    check(echo.accepts == 0 and udp.got == [], f"the loopback targets saw {echo.accepts} connections, {len(udp.got)} datagrams")

    print(" controls: without a guard the same probes reach the targets")
    open_ = Child(["-L", "relay://alice:pw@127.0.0.1:0?bind=true", "-L", "socks5://127.0.0.1:0?udp=true"], "unguarded")
    oport, osocks = open_.waitPorts(2)
    check(relayConnect(oport, hostPort("127.1", echo.port)) == 0, "CONNECT 127.1 served")
    s, status, _ = udpBind(oport)
    s.sendall(encodeTunnelDatagram("localhost", udp.port, b"control"))
    time.sleep(1)
    s.close()
    socks5UDP(osocks, "127.0.0.1", udp.port, b"control")
    check(echo.accepts == 1, f"the echo saw {echo.accepts} connection")
    check([d for d, _ in udp.got] == [b"control", b"control"], f"the UDP server got {[d for d, _ in udp.got]}")
    for c in list(Child.children):
        check(not c.bad(), f"{c.name}: no traceback {c.bad()[:2]}")
    Child.stopAll()


# -- item 4


def wsFrame(data: bytes, op: int = 2, fin: bool = True, length: int | None = None) -> bytes:
    n = len(data) if length is None else length
    first = (0x80 if fin else 0) | op
    if n < 126:
        head = struct.pack(">BB", first, 0x80 | n)
    elif n < 65536:
        head = struct.pack(">BBH", first, 0x80 | 126, n)
    else:
        head = struct.pack(">BBQ", first, 0x80 | 127, n)
    return head + b"\x00\x00\x00\x00" + data  # a zero mask


def wsOpen(port: int) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    key = base64.b64encode(os.urandom(16)).decode()
    s.sendall(
        f"GET /ws HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode()
    )
    head = b""
    while b"\r\n\r\n" not in head:
        data = s.recv(1)
        if not data:
            raise RuntimeError("closed during the handshake")
        head += data
    if b" 101 " not in head.split(b"\r\n")[0]:
        raise RuntimeError(head.decode(errors="replace"))
    return s


def wsRead(s: socket.socket) -> bytes:
    head = recvExact(s, 2)
    n = head[1] & 0x7F
    if n == 126:
        n = struct.unpack(">H", recvExact(s, 2))[0]
    elif n == 127:
        n = struct.unpack(">Q", recvExact(s, 8))[0]
    return recvExact(s, n)


def dropped(s: socket.socket) -> str | None:
    """
    How the server ended C{s} (C{None}: it did not, within 5 s).
    """
    s.settimeout(5)
    try:
        return "EOF" if s.recv(10) == b"" else None
    except TimeoutError:
        return None
    except OSError as e:
        return repr(e)


def websocket() -> None:
    print("websocket")
    echo = EchoServer()
    server = Child(["-L", "relay+ws://127.0.0.1:0"], "ws")
    port = server.waitPorts()[0]
    good = wsOpen(port)
    good.sendall(wsFrame(connectRequest(f"127.0.0.1:{echo.port}").encode() + b"ping"))
    got = b""
    while len(got) < 8:
        got += wsRead(good)

    def roundTrip() -> float:
        start = time.perf_counter()
        good.sendall(wsFrame(b"ping"))
        data = b""
        while len(data) < 4:
            data += wsRead(good)
        return (time.perf_counter() - start) * 1000

    base = sorted(roundTrip() for _ in range(21))[10]
    endless = socket.create_connection(("127.0.0.1", port), timeout=10)
    endless.sendall(b"GET /ws HTTP/1.1\r\nHost: x\r\nX-Endless: ")
    cpu0, rss0, start = server.cpu(), server.rssMiB(), time.time()
    state: dict[str, Any] = {"sent": 0, "ended": None}

    def stream() -> None:
        try:
            while time.time() - start < 13:
                endless.sendall(b"a" * 4096)
                state["sent"] += 4096
        except OSError as e:
            state["ended"] = (round(time.time() - start, 3), repr(e))

    streamer = threading.Thread(target=stream)
    streamer.start()
    latencies = []
    while streamer.is_alive():
        latencies.append(roundTrip())
        time.sleep(0.05)
    latencies.sort()
    median = latencies[len(latencies) // 2]
    cpu, rss = server.cpu() - cpu0, server.rssMiB() - rss0
    print(f"  endless header: {state['sent']} bytes taken, ended {state['ended']}; server CPU {cpu:.2f} s, RSS +{rss} MiB; "
          f"the other client's round trip {base:.2f} ms alone, median {median:.2f} ms beside it")
    check(state["ended"] is not None, "the endless header is dropped")
    check(cpu < 1.0 and rss < 10, "no CPU or memory spent on it")
    check(median < 20, "the other client is not slowed")
    check(any("opening handshake larger than" in line for line in server.lines), "one log line names the drop")

    big = wsOpen(port)
    big.sendall(wsFrame(connectRequest(f"127.0.0.1:{echo.port}").encode()))
    wsRead(big)
    ended: str | None = None
    try:
        big.sendall(wsFrame(b"", length=4 * 1024 * 1024))
        for _ in range(255):
            big.sendall(b"z" * 16384)
    except OSError as e:
        ended = repr(e)
    check((ended or dropped(big)) is not None, f"a 4 MiB frame is dropped before it is complete ({ended})")

    fragments = wsOpen(port)
    fragments.sendall(wsFrame(connectRequest(f"127.0.0.1:{echo.port}").encode()))
    wsRead(fragments)
    ended = None
    try:
        fragments.sendall(wsFrame(b"f" * 30000, fin=False))
        for _ in range(5):
            fragments.sendall(wsFrame(b"f" * 30000, op=0, fin=False))
    except OSError as e:
        ended = repr(e)
    check((ended or dropped(fragments)) is not None, "fragments adding up past 64 KiB are dropped")

    fine = wsOpen(port)
    fine.sendall(wsFrame(connectRequest(f"127.0.0.1:{echo.port}").encode() + b"q" * 60000))
    total = 0
    try:
        while total < 4 + 60000:
            total += len(wsRead(fine))
    except OSError:
        pass
    check(total >= 60004, f"a 60000-byte message is relayed ({total} bytes back)")
    check(not server.bad(), f"no traceback {server.bad()[:2]}")
    Child.stopAll()


# -- item 5


def selfSigned(directory: str) -> tuple[str, str]:
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now).not_valid_after(now + datetime.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    keyFile, certFile = os.path.join(directory, "key.pem"), os.path.join(directory, "cert.pem")
    with open(keyFile, "wb") as f:
        f.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    with open(certFile, "wb") as f:
        f.write(cert.public_bytes(serialization.Encoding.PEM))
    return keyFile, certFile


def tls() -> None:
    print("tls")
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE

    def connect(port: int) -> ssl.SSLSocket:
        return context.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=5))

    def answer(port: int) -> int | str:
        """
        Bytes the server sends to a ClientHello before closing (0 when the
        connection was closed before any TLS byte).
        """
        s = socket.create_connection(("127.0.0.1", port), timeout=5)
        incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        hello = context.wrap_bio(incoming, outgoing)
        try:
            hello.do_handshake()
        except ssl.SSLWantReadError:
            pass
        got = b""
        try:
            s.sendall(outgoing.read())
            while data := s.recv(4096):
                got += data
        except TimeoutError:
            return "held open"
        except OSError:
            pass
        s.close()
        return len(got)

    with open(os.path.join(Child.home, "climiter.yaml"), "w") as f:
        f.write(
            "services:\n- name: climited\n  addr: 127.0.0.1:0\n  climiter: cl\n  handler: {type: relay}\n"
            "  listener: {type: tls}\nclimiters:\n- name: cl\n  limits: ['$$ 1']\n"
        )
    keyFile, certFile = selfSigned(Child.home)
    urls = Child(
        [
            "-L", "relay+tls://127.0.0.1:0?maxConnsPerIP=1", "-L", "relay+tls://127.0.0.1:0?maxConns=1",
            "-L", "relay+wss://127.0.0.1:0?maxConnsPerIP=1", "-L", "relay+tls://127.0.0.1:0?rlimiter=1",
        ],
        "urls",
    )
    yaml = Child(["-C", os.path.join(Child.home, "climiter.yaml")], "yaml")
    twistd = Child(["--listen", f"ssl:0:interface=127.0.0.1:privateKey={keyFile}:certKey={certFile}", "--option", "maxConnsPerIP=1"], "twistd", twistd=True)
    ports = urls.waitPorts(4) + yaml.waitPorts() + twistd.waitPorts()
    names = ["tls maxConnsPerIP=1", "tls maxConns=1", "wss maxConnsPerIP=1", "tls rlimiter=1 (burst 2)", "tls YAML climiter '$$ 1'", "twistd ssl: maxConnsPerIP=1"]
    for port, name in zip(ports, names):
        held = [connect(port) for _ in range(2 if "rlimiter" in name else 1)]
        answers = [answer(port) for _ in range(10)]
        check(all(a == 0 for a in answers), f"{name}: 10 connections over the limit get {answers} bytes (0: closed before any TLS byte)")
        for s in held:
            s.close()
    time.sleep(0.5)
    connect(ports[0]).close()
    for c in (urls, yaml, twistd):
        refusals = [line for line in c.lines if "refused" in line]
        check(not c.bad(), f"{c.name}: no traceback {c.bad()[:2]}")
        check(len(refusals) <= 2 * 4, f"{c.name}: {len(refusals)} refusal lines for {10 * 4} refusals (at most one a second per service)")
    Child.stopAll()


# -- item 6


def kcp(wait: float) -> None:
    print("kcp")
    cipher = crypt.newBlockCrypt("", "")

    def datagram(conv: int) -> bytes:
        segment = arq.Segment(conv, arq.CMD_PUSH, 0, 32, 1000, 0, 0, b"\xff\x06\x00\x00sNaPpY").encode()
        return crypt.encryptPacket(cipher, fec.encodeDataPacket(0, segment))

    echo = EchoServer()
    server = Child(["-L", "relay+kcp://127.0.0.1:0"], "kcp")
    kport = server.waitPorts()[0]
    fwd = Child(["-L", f"tcp://127.0.0.1:0/127.0.0.1:{echo.port}", "-F", f"relay+kcp://127.0.0.1:{kport}"], "forwarder")
    fport = fwd.waitPorts()[0]
    live = socket.create_connection(("127.0.0.1", fport), timeout=10)

    def echoed(s: socket.socket) -> bool:
        try:
            s.sendall(b"L" * 1000)
            return len(recvExact(s, 1000, 10)) == 1000
        except OSError:
            return False

    check(echoed(live), "a live session through a kcp hop")
    spoofer = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    spoofer.bind(("127.0.0.1", 0))
    probe = datagram(0x11111111)
    spoofer.sendto(probe, ("127.0.0.1", kport))
    answers: list[bytes] = []
    end = time.time() + wait
    while (left := end - time.time()) > 0:
        if select.select([spoofer], [], [], left)[0]:
            answers.append(spoofer.recv(65536))
    spoofer.close()
    check(len(answers) <= 1 and sum(map(len, answers)) <= len(probe),
          f"one spoofed {len(probe)}-byte datagram drew {len(answers)} datagrams, {sum(map(len, answers))} bytes in {wait:g} s")
    for label, hosts in (
        ("1,100 ports of 127.0.0.1", ["127.0.0.1"] * 1100),
        ("1,100 addresses 127.2.x.y", [f"127.2.{i // 250}.{i % 250 + 1}" for i in range(1100)]),
    ):
        before = server.cpu()
        sockets = []
        for i, host in enumerate(hosts):
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.bind((host, 0))
            s.sendto(datagram(0x20000000 + i), ("127.0.0.1", kport))
            sockets.append(s)
        last = server.cpu()
        while True:
            time.sleep(1)
            now = server.cpu()
            if now - last < 0.05:
                break
            last = now
        for s in sockets:
            s.close()
        check(now - before < 1.5, f"{label}: server CPU {now - before:.2f} s")
        check(echoed(live), f"{label}: the live session survives")
        fresh = socket.create_connection(("127.0.0.1", fport), timeout=10)
        check(echoed(fresh), f"{label}: a new connection through the hop")
        fresh.close()
    live.close()
    check(not server.bad() and not fwd.bad(), f"no traceback {(server.bad() + fwd.bad())[:2]}")
    Child.stopAll()


# -- items 8-12


def low() -> None:
    print("low")
    udp = UDPServer()
    warn = Child(["-L", "relay://:secret@127.0.0.1:0", "-F", "relay+tls://alice:pw@127.0.0.1:9"], "warnings")
    warn.waitPorts()
    time.sleep(0.3)
    warnings = [line for line in warn.lines if "#warn" in line]
    check(any("empty user name" in line for line in warnings), "item 8: a password with an empty user name: a warning")
    check(any("does not verify the server" in line for line in warnings), "item 12: credentials over unverified TLS: a warning")
    check("secret" not in warn.out and ":pw" not in warn.out, "no password in the log")
    warn.stop()

    server = Child(["-L", "relay://127.0.0.1:0?bind=true", "-L", "socks5://127.0.0.1:0?udp=true"], "server")
    rport, sport = server.waitPorts(2)

    def request(command: int, features: list[Any]) -> tuple[int | None, float]:
        s = socket.create_connection(("127.0.0.1", rport), timeout=20)
        s.sendall(Request(command, tuple(features)).encode())
        start = time.time()
        status, _ = relayResponse(s)
        s.close()
        return status, time.time() - start

    def rawDomain(command: int, name: bytes, port: int) -> int | None:
        feature = b"\x02" + struct.pack(">H", 4 + len(name)) + b"\x03" + bytes([len(name)]) + name + struct.pack(">H", port)
        s = socket.create_connection(("127.0.0.1", rport), timeout=20)
        s.sendall(bytes([1, command]) + struct.pack(">H", len(feature)) + feature)
        status, _ = relayResponse(s)
        s.close()
        return status

    check(rawDomain(2, b"0.0.0.0::99999", 0) == 1, "item 9: BIND to '0.0.0.0::99999' answers 0x01")
    for name in ("a..b", "x" * 200 + ".example"):
        status, took = request(int(Command.CONNECT) | FLAG_UDP, [NetworkFeature(Network.UDP), AddrFeature(name, 53, 3)])
        check(status not in (0, None) and took < 2, f"item 9: UDP CONNECT to {name[:8]!r}...: {status} after {took:.2f} s")
    s = socket.create_connection(("127.0.0.1", rport), timeout=20)
    s.sendall(Request(int(Command.BIND) | FLAG_UDP, (NetworkFeature(Network.UDP), AddrFeature.fromHostPort("0.0.0.0", 0))).encode())
    relayResponse(s)
    s.sendall(encodeTunnelDatagram("a..b", 53, b"x") + encodeTunnelDatagram("y" * 200 + ".example", 53, b"x"))
    socks5UDP(sport, "a..b", 53, b"x")
    s.close()
    for evil in (b"evil\n2026-01-01 [gostrelay#info] FORGED", b"\x1b[2Jclear", b"bad\xff"):
        rawDomain(1, evil, 80)
    time.sleep(0.5)
    check(not any(line.startswith("2026-01-01") for line in server.lines), "item 10: a newline in a name does not start a log line")
    check("\x1b" not in server.out, "item 10: no terminal escape reaches the log")
    check(not server.bad(), f"item 9: no traceback {server.bad()[:2]}")

    forward = Child(["-L", f"udp://127.0.0.1:0/127.0.0.1:{udp.port}"], "udp")
    uport = forward.waitPorts()[0]
    time.sleep(0.3)
    base = forward.fds()
    sockets = []
    for _ in range(600):
        u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        u.bind(("127.0.0.1", 0))
        u.sendto(b"q", ("127.0.0.1", uport))
        sockets.append(u)
    time.sleep(1)
    grown = forward.fds() - base
    check(grown <= 64 + 4, f"item 11: 600 one-byte datagrams from 600 ports: {grown} more descriptors (maxSessionsPerIP 64)")
    for u in sockets:
        u.close()
    Child.stopAll()


PROBES = ("descriptors", "ssrf", "websocket", "tls", "kcp", "low")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("probes", nargs="*", metavar="PROBE", help=f"any of {', '.join(PROBES)} (default: all)")
    parser.add_argument("--limit", type=int, default=512, help="descriptors: RLIMIT_NOFILE of the children")
    parser.add_argument("--clients", type=int, default=600, help="descriptors: clients")
    parser.add_argument("--size", type=int, default=128 * 1024, help="descriptors: bytes each client echoes")
    parser.add_argument("--held", type=int, default=0, help="descriptors: descriptors held in each child")
    parser.add_argument("--kcp-wait", type=float, default=30.0, help="kcp: how long to listen for answers to one datagram")
    args = parser.parse_args()
    unknown = [p for p in args.probes if p not in PROBES]
    if unknown:
        parser.error(f"unknown probe {unknown[0]!r}: choose from {', '.join(PROBES)}")
    probes = args.probes or list(PROBES)
    try:
        for probe in probes:
            if probe == "descriptors":
                descriptors(args.limit, args.clients, args.size, args.held)
            elif probe == "kcp":
                kcp(args.kcp_wait)
            else:
                globals()[probe]()
    finally:
        Child.stopAll()
        shutil.rmtree(Child.home, ignore_errors=True)
    print(f"{len(FAILS)} failed" + (": " + "; ".join(FAILS) if FAILS else ""))
    sys.exit(min(len(FAILS), 100))


if __name__ == "__main__":
    main()
