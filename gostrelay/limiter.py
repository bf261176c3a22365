"""
GOST's traffic limiter (C{limiter}) and request-rate limiter
(C{rlimiter}) on a service, as back-pressure.

Traffic limits (bytes per second, GOST's base-2 units: C{1MB} = 1 MiB/s;
burst: one second's worth), one line each, C{KEY IN [OUT]}:

  - C{$}: the whole service (C{?limiter.in=}, C{?limiter.out=});
  - C{$$}: each connection (C{?limiter.conn.in=}, C{?limiter.conn.out=});
  - an IP: that client, all its connections together; a CIDR: each client
    address in it, all its connections together.

C{in} is what the client sends, C{out} what it is sent.  Every limit that
applies is enforced (GOST's limiter group).  Nothing is buffered: bytes
already read are passed on and charged to the token buckets; a bucket in
debt pauses the producer for as long as the debt takes to repay (reading
from the client for C{in}; the producer feeding the client, the target's
transport in a pipe, for C{out}).  A limited connection is never spliced
(the kernel path would bypass the count).

Request-rate limits (C{rlimiter}, connections per second, burst
C{int(rate)+1} as GOST's): C{$} for the service, C{$$} for each client IP
without a line of its own, an IP or a CIDR for those clients.  They are
checked in the accept layers beside admission (L{RequestLimits} is a
check there): a connection over the rate is closed at accept, before any
TLS or WebSocket handshake, with no reply.

Lines come from C{limits:} and from C{file: {path}} (read at start;
C{reload} is refused by name).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from typing import Any

from twisted.internet.interfaces import IPushProducer
from twisted.protocols.policies import WrappingFactory
from zope.interface import implementer

from gostrelay.config.metadata import Metadata, parseByteSize
from gostrelay.config.model import Config, ConfigError, NamedListConfig, ServiceConfig
from gostrelay.logs import Logger
from gostrelay.tracking import PassThroughWrapper

_log = Logger(namespace="gostrelay.limits")

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

#: Per-client request buckets kept before the full ones are forgotten.
MAX_CLIENT_BUCKETS = 4096

SERVICE_KEY = "$"
CONNECTION_KEY = "$$"

def parseRate(text: str) -> int:
    """
    Bytes per second from GOST's sizes (base 2: C{512KB}, C{1MB}, C{1MiB},
    C{1GB}; a bare number is bytes); 0 for an empty value (no limit).

    @raise ValueError: for a value that is not a size (GOST reads it as
        no limit; a typo must not silently lift a limit).
    """
    rate = parseByteSize(text)
    if rate is None:
        raise ValueError(f"{text!r} is not a rate like 512KB or 1MB (bytes per second, base 2)")
    return rate


def _lines(section: NamedListConfig, where: str) -> list[str]:
    """
    A limiter section's lines: C{limits} then its file's, comments gone.
    """
    body = section.extra
    for loader in ("redis", "http", "plugin"):
        if body.get(loader):
            raise ConfigError(f"{where}: {section.name}: {loader} is not implemented")
    lines = [str(x) for x in body.get("limits") or []]
    fileSection = body.get("file") or {}
    path = str(fileSection.get("path", "")) if isinstance(fileSection, dict) else str(fileSection)
    if path:
        try:
            with open(path, encoding="utf-8") as f:
                lines.extend(f.read().splitlines())
        except OSError as e:
            raise ConfigError(f"{where}: {section.name}: cannot read {path}: {e.strerror}") from None
    return [line.split("#", 1)[0].strip() for line in lines if line.split("#", 1)[0].strip()]


def _key(key: str) -> str | IPAddress | IPNetwork | None:
    if key in (SERVICE_KEY, CONNECTION_KEY):
        return key
    try:
        return ipaddress.ip_address(key)
    except ValueError:
        pass
    try:
        return ipaddress.ip_network(key, strict=False)
    except ValueError:
        return None


def _ip(host: str) -> IPAddress | None:
    try:
        ip = ipaddress.ip_address(host.strip("[]").split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


class TokenBucket:
    """
    C{rate} tokens a second, at most C{burst} saved.  L{take} always takes
    (bytes already read must be passed on) and says how long the debt
    takes to repay; L{allow} takes only when there are enough.
    """

    def __init__(self, clock: Any, rate: float, burst: float | None = None) -> None:
        self.clock = clock
        self.rate = float(rate)
        self.burst = float(rate if burst is None else burst)
        self.tokens = self.burst
        self._stamp = clock.seconds()

    def _refill(self) -> None:
        now = self.clock.seconds()
        self.tokens = min(self.burst, self.tokens + (now - self._stamp) * self.rate)
        self._stamp = now

    def take(self, n: int) -> float:
        self._refill()
        self.tokens -= n
        return 0.0 if self.tokens >= 0 else -self.tokens / self.rate

    def allow(self, n: int = 1) -> bool:
        self._refill()
        if self.tokens >= n:
            self.tokens -= n
            return True
        return False


class _Shared:
    """
    A bucket shared by several connections, dropped with the last one (so
    that per-client buckets do not pile up).
    """

    def __init__(self, bucket: TokenBucket) -> None:
        self.bucket = bucket
        self.users = 0


class TrafficLimits:
    """
    One service's traffic limits; L{bucketsFor} gives a connection its
    buckets, C{(in, out)}.
    """

    def __init__(self, clock: Any, lines: Iterable[str], where: str = "limiter") -> None:
        self.clock = clock
        self.service: tuple[int, int] = (0, 0)
        self.connection: tuple[int, int] = (0, 0)
        self.ips: dict[IPAddress, tuple[int, int]] = {}
        self.nets: list[tuple[IPNetwork, tuple[int, int]]] = []
        for line in lines:
            fields = line.split()
            key = _key(fields[0]) if fields else None
            if key is None or len(fields) < 2:
                raise ConfigError(f"{where}: limit {line!r} is not understood (KEY IN [OUT], KEY: $, $$, an IP or a CIDR)")
            try:
                rates = (parseRate(fields[1]), parseRate(fields[2]) if len(fields) > 2 else 0)
            except ValueError as e:
                raise ConfigError(f"{where}: limit {line!r}: {e}") from None
            if key == SERVICE_KEY:
                self.service = rates
            elif key == CONNECTION_KEY:
                self.connection = rates
            elif isinstance(key, (ipaddress.IPv4Address, ipaddress.IPv6Address)):
                self.ips[key] = rates
            else:
                self.nets.append((key, rates))  # type: ignore[arg-type]
        self._serviceBuckets = [TokenBucket(clock, r) if r else None for r in self.service]
        self._clients: dict[tuple[int, str], _Shared] = {}

    def _clientRates(self, ip: IPAddress | None) -> tuple[int, int]:
        if ip is None:
            return (0, 0)
        if ip in self.ips:
            return self.ips[ip]
        for net, rates in self.nets:
            if ip.version == net.version and ip in net:
                return rates
        return (0, 0)

    @property
    def empty(self) -> bool:
        return not any(self.service) and not any(self.connection) and not self.ips and not self.nets

    def bucketsFor(self, host: str) -> tuple[list[TokenBucket], list[TokenBucket], list[tuple[int, str]]]:
        """
        The buckets of a new connection from C{host}, per direction, and
        the shared client buckets it holds (give them back with
        L{release}).
        """
        buckets: list[list[TokenBucket]] = [[], []]
        held: list[tuple[int, str]] = []
        ip = _ip(host)
        client = self._clientRates(ip)
        for direction in (0, 1):
            if self._serviceBuckets[direction] is not None:
                buckets[direction].append(self._serviceBuckets[direction])  # type: ignore[arg-type]
            if self.connection[direction]:
                buckets[direction].append(TokenBucket(self.clock, self.connection[direction]))
            if client[direction] and ip is not None:
                key = (direction, str(ip))
                shared = self._clients.get(key)
                if shared is None:
                    shared = self._clients[key] = _Shared(TokenBucket(self.clock, client[direction]))
                shared.users += 1
                held.append(key)
                buckets[direction].append(shared.bucket)
        return buckets[0], buckets[1], held

    def release(self, held: Iterable[tuple[int, str]]) -> None:
        for key in held:
            shared = self._clients.get(key)
            if shared is not None:
                shared.users -= 1
                if shared.users <= 0:
                    del self._clients[key]


class RequestLimits:
    """
    One service's request rate limits (GOST's C{rlimiter}).
    """

    def __init__(self, clock: Any, lines: Iterable[str], where: str = "rlimiter") -> None:
        self.clock = clock
        self.service: TokenBucket | None = None
        self.perIP = 0.0
        self.ips: dict[IPAddress, float] = {}
        self.nets: list[tuple[IPNetwork, float]] = []
        self._buckets: dict[str, TokenBucket] = {}
        for line in lines:
            fields = line.split()
            key = _key(fields[0]) if fields else None
            try:
                rate = float(fields[1]) if len(fields) > 1 else 0.0
            except ValueError:
                rate = -1.0
            if key is None or rate < 0:
                raise ConfigError(f"{where}: limit {line!r} is not understood (KEY RATE, KEY: $, $$, an IP or a CIDR)")
            if rate == 0:
                continue
            if key == SERVICE_KEY:
                self.service = TokenBucket(clock, rate, int(rate) + 1)
            elif key == CONNECTION_KEY:
                self.perIP = rate
            elif isinstance(key, (ipaddress.IPv4Address, ipaddress.IPv6Address)):
                self.ips[key] = rate
            else:
                self.nets.append((key, rate))  # type: ignore[arg-type]

    def _rateFor(self, ip: IPAddress | None) -> float:
        if ip is None:
            return 0.0
        if ip in self.ips:
            return self.ips[ip]
        for net, rate in self.nets:
            if ip.version == net.version and ip in net:
                return rate
        return self.perIP

    def __call__(self, peer: Any) -> str | None:
        """
        The accept layers' check (beside admission): why a new connection
        from C{peer} is refused, or C{None}.
        """
        if self.allow(str(getattr(peer, "host", "") or "")):
            return None
        return "request rate limit (rlimiter)"

    def allow(self, host: str) -> bool:
        ip = _ip(host)
        rate = self._rateFor(ip)
        if rate and ip is not None:
            bucket = self._buckets.get(str(ip))
            if bucket is None:
                if len(self._buckets) >= MAX_CLIENT_BUCKETS:
                    self._forgetFull()
                bucket = self._buckets[str(ip)] = TokenBucket(self.clock, rate, int(rate) + 1)
            if not bucket.allow():
                return False
        if self.service is not None and not self.service.allow():
            return False
        return True

    def _forgetFull(self) -> None:
        """
        Forget the clients whose bucket is full again: an idle client has
        its whole burst anyway, so only recent clients take memory.
        """
        for key, bucket in list(self._buckets.items()):
            bucket._refill()
            if bucket.tokens >= bucket.burst:
                del self._buckets[key]


@implementer(IPushProducer)
class ThrottleGate:
    """
    A producer paused for two reasons: its consumer asked (Twisted's flow
    control calls L{pauseProducing}) or a rate limit is in debt
    (L{holdFor}).  It resumes only when neither holds.
    """

    def __init__(self, clock: Any, producer: Any) -> None:
        self.clock = clock
        self.producer = producer
        self.consumerPaused = False
        self._rateCall: Any = None
        self.rateHolds = 0

    @property
    def paused(self) -> bool:
        return self.consumerPaused or self._rateCall is not None

    def pauseProducing(self) -> None:
        was = self.paused
        self.consumerPaused = True
        if not was:
            self.producer.pauseProducing()

    def resumeProducing(self) -> None:
        self.consumerPaused = False
        if not self.paused:
            self.producer.resumeProducing()

    def stopProducing(self) -> None:
        self.cancel()
        self.producer.stopProducing()

    def holdFor(self, seconds: float) -> None:
        """
        Pause for at least C{seconds} (a bucket's debt).
        """
        if seconds <= 0:
            return
        self.rateHolds += 1
        if self._rateCall is not None:
            if self._rateCall.getTime() < self.clock.seconds() + seconds:
                self._rateCall.reset(seconds)
            return
        was = self.paused
        self._rateCall = self.clock.callLater(seconds, self._release)
        if not was:
            self.producer.pauseProducing()

    def _release(self) -> None:
        self._rateCall = None
        if not self.paused:
            self.producer.resumeProducing()

    def cancel(self) -> None:
        if self._rateCall is not None and self._rateCall.active():
            self._rateCall.cancel()
        self._rateCall = None


class LimitedProtocol(PassThroughWrapper):
    """
    A client connection under traffic limits: what it sends is charged to
    its C{in} buckets (a debt pauses reading from it), what it is sent to
    its C{out} buckets (a debt pauses the producer feeding it).  Half-close
    is the handler's, as without a limit (a client that sends its request
    and shuts down its side still gets the answer).
    """

    #: Never spliced: the kernel path would bypass the count.
    spliceCarrier = None  # type: ignore[assignment]

    def __init__(self, factory: LimitedFactory, wrappedProtocol: Any, host: str) -> None:
        super().__init__(factory, wrappedProtocol)  # type: ignore[arg-type]
        self.limits: TrafficLimits = factory.traffic  # type: ignore[assignment]
        self.inBuckets, self.outBuckets, self.held = self.limits.bucketsFor(host)
        self.clock = factory.clock
        self.inGate: ThrottleGate | None = None
        self.outGate: ThrottleGate | None = None

    def makeConnection(self, transport: Any) -> None:
        self.inGate = ThrottleGate(self.clock, transport)
        super().makeConnection(transport)

    # -- in: what the client sends

    def dataReceived(self, data: bytes) -> None:
        if self.inBuckets and self.inGate is not None:
            wait = max(bucket.take(len(data)) for bucket in self.inBuckets)
            self.inGate.holdFor(wait)
        self.wrappedProtocol.dataReceived(data)

    def pauseProducing(self) -> None:
        if self.inGate is not None:
            self.inGate.pauseProducing()

    def resumeProducing(self) -> None:
        if self.inGate is not None:
            self.inGate.resumeProducing()

    def stopProducing(self) -> None:
        self.transport.stopProducing()  # type: ignore[union-attr]

    # -- out: what the client is sent

    def write(self, data: bytes) -> None:
        self._chargeOut(len(data))
        super().write(data)

    def writeSequence(self, data: Any) -> None:
        self._chargeOut(sum(len(d) for d in data))
        super().writeSequence(data)

    def _chargeOut(self, n: int) -> None:
        if self.outBuckets and n:
            wait = max(bucket.take(n) for bucket in self.outBuckets)
            if self.outGate is not None:
                self.outGate.holdFor(wait)

    def registerProducer(self, producer: Any, streaming: bool) -> None:
        if streaming and self.outBuckets:
            self.outGate = ThrottleGate(self.clock, producer)
            producer = self.outGate
        super().registerProducer(producer, streaming)

    def unregisterProducer(self) -> None:
        if self.outGate is not None:
            self.outGate.cancel()
            self.outGate = None
        super().unregisterProducer()

    def connectionLost(self, reason: Any = None) -> None:
        for gate in (self.inGate, self.outGate):
            if gate is not None:
                gate.cancel()
        self.limits.release(self.held)
        self.held = []
        super().connectionLost(reason)


class LimitedFactory(WrappingFactory):
    """
    A stream handler under a service's traffic and request-rate limits.
    """

    protocol = LimitedProtocol  # type: ignore[assignment]
    noisy = False

    def __init__(
        self,
        handler: Any,
        service: str,
        clock: Any,
        traffic: TrafficLimits,
    ) -> None:
        super().__init__(handler)
        self.service = service
        self.clock = clock
        self.traffic = traffic

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        return getattr(self.__dict__["wrappedFactory"], name)

    def buildProtocol(self, addr: Any) -> Any:
        host = str(getattr(addr, "host", ""))
        inner = self.wrappedFactory.buildProtocol(addr)
        if inner is None:
            return inner
        return LimitedProtocol(self, inner, host)


def _section(sections: Sequence[NamedListConfig], name: str, kind: str, where: str) -> NamedListConfig:
    for section in sections:
        if section.name == name:
            return section
    raise ConfigError(f"{where}: {kind} {name!r} is not defined")


def limitsFor(clock: Any, svc: ServiceConfig, config: Config, where: str) -> tuple[TrafficLimits | None, RequestLimits | None]:
    """
    The traffic and request-rate limits of C{svc} (its C{limiter} and
    C{rlimiter}), C{None} for those it has not.

    @raise ConfigError: for an undefined name or a line we cannot read.
    """
    traffic = requests = None
    if svc.limiter:
        section = _section(config.limiters, svc.limiter, "limiter", where)
        traffic = TrafficLimits(clock, _lines(section, where), f"{where}: limiter {svc.limiter}")
    if svc.rlimiter:
        section = _section(config.rlimiters, svc.rlimiter, "rlimiter", where)
        requests = RequestLimits(clock, _lines(section, where), f"{where}: rlimiter {svc.rlimiter}")
    for section in [s for s in (config.limiters + config.rlimiters) if s.name in (svc.limiter, svc.rlimiter)]:
        if Metadata(section.extra).getDuration("reload"):
            raise ConfigError(f"{where}: {section.name}: reload is not implemented for limiters")
    return traffic, requests


def wrapHandler(clock: Any, handler: Any, traffic: TrafficLimits | None, service: str) -> Any:
    """
    C{handler} under traffic limits, or C{handler} itself without any.
    """
    if traffic is None or traffic.empty:
        return handler
    return LimitedFactory(handler, service, clock, traffic)
