"""
The C{kcp:} endpoint strings: GOST's kcp + smux stack (the C{kcp} listener
and dialer of L{gostrelay.transports.kcp}) in the shape of Twisted's
C{tcp:} strings, so that a Twisted program and a C{relay+kcp} peer meet::

    serverFromString(reactor, "kcp:8420:interface=127.0.0.1")   # every smux stream is a connection
    clientFromString(reactor, "kcp:relay.example:8420")           # one smux stream per connect
    clientFromString(reactor, r"relay:kcp\\:relay.example\\:8420:host=example.com:port=80")

Options are the kcp listener's and dialer's, with or without the C{kcp.}
prefix GOST's URLs use: C{key}, C{crypt}, C{mode}, C{mtu}, C{sndwnd},
C{rcvwnd}, C{nocomp}, C{smuxver}, C{interval}, C{keepalive}, C{smuxbuf},
C{streambuf}; the config file's fields (C{datashard}, C{parityshard},
C{acknodelay}, C{sockbuf}, C{nodelay}, C{resend}, C{nc}) as keywords too;
C{c=FILE} (or C{configFile}) reads GOST's JSON kcp file.  Absent options
take GOST's I{effective} defaults (empty key, AES, windows 32/32, FEC 10+3,
snappy, smux v1), so a plain C{kcp:} string and a plain C{relay+kcp://}
peer agree.  Server only: C{interface}, C{maxSessions}.  Client only:
C{idle} (seconds a session without streams keeps its socket; 5).
"""

from __future__ import annotations

from typing import Any

from twisted.internet import defer
from twisted.internet.interfaces import IProtocolFactory, IStreamClientEndpoint, IStreamServerEndpoint
from zope.interface import implementer

from gostrelay.config.model import ConfigError, DialerConfig, ListenerConfig, NodeConfig, ServiceConfig
from gostrelay.transports.kcp import KCPDialer, KCPListener
from gostrelay.wire.address import joinHostPort

#: Seconds a client session without streams keeps its UDP socket, so that
#: connections in quick succession share one conversation.
DEFAULT_IDLE = 5.0

#: Options GOST's URLs spell C{kcp.NAME}.
_KCP_KEYS = (
    "key", "crypt", "mode", "mtu", "sndwnd", "rcvwnd", "nocomp", "smuxver",
    "interval", "keepalive", "smuxbuf", "streambuf", "configFile", "tcp",
)
#: Fields of GOST's kcp JSON file that survive its overwrite.
_FILE_KEYS = ("datashard", "parityshard", "acknodelay", "sockbuf", "nodelay", "resend", "nc")


def kcpMetadata(kwargs: dict[str, str], extra: tuple[str, ...], where: str) -> tuple[dict[str, Any], dict[str, str]]:
    """
    Split an endpoint string's keywords into the kcp metadata the listener
    and dialer read (C{kcp.*} keys, the file's fields under C{kcp.config})
    and the endpoint's own keywords (C{extra}).

    @raise ValueError: for a keyword that is none of them, naming it.
    """
    metadata: dict[str, Any] = {}
    fileFields: dict[str, str] = {}
    own: dict[str, str] = {}
    for name, value in kwargs.items():
        bare = name[4:] if name.startswith("kcp.") else name
        if name in extra:
            own[name] = value
        elif bare in _KCP_KEYS:
            metadata["kcp." + bare] = value
        elif bare == "c":
            metadata["kcp.configFile"] = value
        elif bare in _FILE_KEYS:
            fileFields[bare] = value
        else:
            known = ", ".join(sorted((*_KCP_KEYS, *_FILE_KEYS, "c", *extra)))
            raise ValueError(f"{where}: unknown option {name!r} (known: {known})")
    if fileFields:
        metadata["kcp.config"] = fileFields
    return metadata, own


@implementer(IStreamServerEndpoint)
class KCPServerEndpoint:
    """
    Listens for KCP sessions on a UDP port; every smux stream a client opens
    is a connection of the factory's, addressed from the client's UDP
    address.
    """

    def __init__(self, reactor: Any, port: int, interface: str = "", metadata: dict[str, Any] | None = None) -> None:
        service = ServiceConfig(
            name="kcp endpoint",
            addr=joinHostPort(interface, int(port)),
            listener=ListenerConfig(type="kcp", metadata=dict(metadata or {})),
        )
        try:
            self.listener = KCPListener(reactor, service, None)
        except ConfigError as e:
            raise ValueError(str(e)) from None

    def listen(self, protocolFactory: IProtocolFactory) -> defer.Deferred[Any]:
        return defer.maybeDeferred(self.listener.listen, protocolFactory)


@implementer(IStreamClientEndpoint)
class KCPClientEndpoint:
    """
    One KCP session (one UDP socket, one conversation) to C{host:port}, an
    smux stream per connection; the session closes C{idle} seconds after its
    last stream and a later connect opens a new one.
    """

    def __init__(
        self, reactor: Any, host: str, port: int, metadata: dict[str, Any] | None = None, idle: float = DEFAULT_IDLE
    ) -> None:
        self.address = joinHostPort(host, int(port))
        node = NodeConfig(name="kcp endpoint", addr=self.address, dialer=DialerConfig(type="kcp", metadata=dict(metadata or {})))
        try:
            self.dialer = KCPDialer(reactor, node, None, idleTimeout=idle)
        except ConfigError as e:
            raise ValueError(str(e)) from None
        self._streams = self.dialer.endpoint(self.address)

    def connect(self, protocolFactory: IProtocolFactory) -> defer.Deferred[Any]:
        return self._streams.connect(protocolFactory)

    def close(self) -> None:
        """
        Close the session now (its streams end), rather than when idle.
        """
        for client in list(self.dialer.clients.values()):
            client.close()


def parseKCPServer(reactor: Any, *args: str, **kwargs: str) -> KCPServerEndpoint:
    """
    C{kcp:PORT[:interface=ADDR][:option=value...]} (or C{port=PORT}).
    """
    metadata, own = kcpMetadata(kwargs, ("port", "interface", "maxSessions"), "kcp")
    if len(args) > 1:
        raise ValueError(f"kcp: too many positional arguments {args!r} (kcp:PORT[:interface=ADDR])")
    port = args[0] if args else own.get("port")
    if port is None or not str(port).isdigit():
        raise ValueError("kcp: needs a port (kcp:PORT)")
    if "maxSessions" in own:
        metadata["maxSessions"] = own["maxSessions"]
    return KCPServerEndpoint(reactor, int(port), own.get("interface", ""), metadata)


def parseKCPClient(reactor: Any, *args: str, **kwargs: str) -> KCPClientEndpoint:
    """
    C{kcp:HOST:PORT[:option=value...]} or C{kcp:host=H:port=P[:...]}.
    """
    metadata, own = kcpMetadata(kwargs, ("host", "port", "idle"), "kcp")
    if len(args) > 2:
        raise ValueError(f"kcp: too many positional arguments {args!r} (kcp:HOST:PORT)")
    host = args[0] if args else own.get("host")
    port = args[1] if len(args) > 1 else own.get("port")
    if not host or port is None or not str(port).isdigit():
        raise ValueError("kcp: needs a host and a port (kcp:HOST:PORT or kcp:host=H:port=P)")
    try:
        idle = float(own.get("idle", DEFAULT_IDLE))
    except ValueError:
        raise ValueError(f"kcp: idle must be a number of seconds, not {own['idle']!r}") from None
    return KCPClientEndpoint(reactor, host, int(port), metadata, idle)
