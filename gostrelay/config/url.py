"""
GOST's command-line URLs: C{-L} services and C{-F} chain nodes
(spec-relay.md 9.2, 9.3), turned into the configuration model exactly as
GOST's C{BuildConfigFromCmd} does, so that C{-O yaml} prints what GOST prints.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Sequence
from urllib.parse import parse_qsl, unquote

from gostrelay.config import names
from gostrelay.config.listen import ListenSpec, didYouMean, typeNames
from gostrelay.config.metadata import Metadata
from gostrelay.config.model import (
    AuthConfig,
    AutherConfig,
    AutherFileConfig,
    BypassConfig,
    ChainConfig,
    Config,
    ConfigError,
    ConnectorConfig,
    DialerConfig,
    ForwarderConfig,
    ForwardNodeConfig,
    HandlerConfig,
    HopConfig,
    ListenerConfig,
    NamedListConfig,
    NodeConfig,
    SelectorConfig,
    ServiceConfig,
    TLSConfig,
)
from gostrelay.config.options import (
    NODE_OPTIONS,
    NODE_URL_KEYS,
    SERVICE_OPTIONS,
    SERVICE_URL_KEYS,
    typeOptions,
    unknownOptions,
)


class _URL:
    """
    The parts of a GOST URL.  Parsed by hand rather than with
    L{urllib.parse}: GOST's hosts may be port ranges (C{:8000-8003}) or node
    lists (C{a:1,b:2}), which URL parsers refuse.
    """

    def __init__(self, text: str) -> None:
        self.text = text
        scheme, sep, rest = text.partition("://")
        if not sep:
            raise ConfigError(f"{text}: missing scheme")
        self.scheme = scheme.lower()
        rest, _, self.fragment = rest.partition("#")
        end = len(rest)
        for ch in "/?":
            i = rest.find(ch)
            if 0 <= i < end:
                end = i
        authority, tail = rest[:end], rest[end:]
        userinfo, at, host = authority.rpartition("@")
        self.host = host
        self.user: str | None = None
        self.password: str | None = None
        if at:
            user, colon, password = userinfo.partition(":")
            self.user = unquote(user)
            self.password = unquote(password) if colon else None
        path, _, query = tail.partition("?")
        self.path = path
        self.query: dict[str, str] = {}
        for key, value in parse_qsl(query, keep_blank_values=True):
            # Go's url.Values keeps every value; GOST uses the first.
            self.query.setdefault(key, value)

    @property
    def hostname(self) -> str:
        """Go's C{URL.Hostname()}: the host without its last C{:port}."""
        host = self.host
        if host.startswith("["):
            return host[1 : host.find("]")] if "]" in host else host[1:]
        i = host.rfind(":")
        if i >= 0 and (host[i + 1 :].isdigit() or host[i + 1 :] == ""):
            return host[:i]
        return host


_PORT_RANGE = re.compile(r"^(?P<host>.*):(?P<lo>\d+)-(?P<hi>\d+)$")


def expandPortRange(addr: str) -> list[str]:
    """
    C{"host:8000-8003"} → four addresses; anything else → itself.
    """
    m = _PORT_RANGE.match(addr)
    if m is None:
        return [addr]
    lo, hi = int(m.group("lo")), int(m.group("hi"))
    if lo > hi:
        lo, hi = hi, lo
    if hi > 0xFFFF:
        raise ConfigError(f"{addr}: port out of range")
    return [f"{m.group('host')}:{port}" for port in range(lo, hi + 1)]


_BASE64 = re.compile(r"^[A-Za-z0-9+/]*={0,2}$")
_BASE64URL = re.compile(r"^[A-Za-z0-9_-]*$")


def _decodeAuthParam(value: str, where: str) -> AuthConfig:
    """
    C{?auth=base64(user:pass)}: GOST tries unpadded URL-safe base64, then
    standard base64, and refuses anything else.
    """
    raw: bytes | None = None
    if _BASE64URL.match(value) and len(value) % 4 != 1:
        raw = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
    elif _BASE64.match(value) and len(value) % 4 == 0:
        try:
            raw = base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            raw = None
    if raw is None:
        raise ConfigError(f"{where}: auth= is not base64(user:pass)")
    text = raw.decode("utf-8", "surrogateescape")
    user, colon, password = text.partition(":")
    return AuthConfig(username=user, password=password if colon else "")


def _parseSelector(m: dict[str, object]) -> SelectorConfig | None:
    md = Metadata(m)
    strategy = md.getString("strategy")
    maxFails = md.getInt("maxFails", "max_fails")
    failTimeout = md.getDuration("failTimeout", "fail_timeout")
    if not strategy and maxFails <= 0 and failTimeout <= 0:
        return None
    for key in ("strategy", "maxFails", "max_fails", "failTimeout", "fail_timeout"):
        m.pop(key, None)
    return SelectorConfig(
        strategy=strategy or "round",
        maxFails=maxFails if maxFails > 0 else 1,
        failTimeout=failTimeout if failTimeout > 0 else 30.0,
    )


def _takeBypass(cfg: Config, m: dict[str, object]) -> str:
    value = Metadata(m).getString("bypass")
    if not value:
        return ""
    bypass = BypassConfig(name=f"bypass-{len(cfg.bypasses)}")
    if value.startswith("~"):
        bypass.whitelist = True
        value = value[1:]
    bypass.matchers = [s for s in value.split(",") if s]
    cfg.bypasses.append(bypass)
    m.pop("bypass", None)
    return bypass.name


def _takeNamed(cfg: Config, m: dict[str, object], key: str, section: str, body: dict[str, object]) -> str:
    items = getattr(cfg, section)
    named = NamedListConfig(name=f"{key}-{len(items)}")
    named.extra = body
    items.append(named)
    m.pop(key, None)
    return named.name


def _takeResolverAndHosts(cfg: Config, m: dict[str, object]) -> tuple[str, str]:
    """
    C{resolver=ns1,ns2} and C{hosts=name:ip,...} become named top-level
    objects, as GOST's command line makes them; returns their names.
    """
    md = Metadata(m)
    resolver = hosts = ""
    if md.getString("resolver"):
        nameservers = [{"addr": a} for a in md.getString("resolver").split(",") if a]
        resolver = _takeNamed(cfg, m, "resolver", "resolvers", {"nameservers": nameservers})
    if md.getString("hosts"):
        mappings = []
        for item in md.getString("hosts").split(","):
            hostname, colon, ip = item.partition(":")
            if colon:
                mappings.append({"hostname": hostname, "ip": ip})
        hosts = _takeNamed(cfg, m, "hosts", "hosts", {"mappings": mappings})
    return resolver, hosts


def _takeTLSFiles(m: dict[str, object]) -> tuple[str, str, str]:
    md = Metadata(m)
    cert = md.getString("tls.certFile", "certFile", "cert")
    key = md.getString("tls.keyFile", "keyFile", "key")
    ca = md.getString("tls.caFile", "caFile", "ca")
    for k in ("tls.certFile", "certFile", "cert", "tls.keyFile", "keyFile", "key", "tls.caFile", "caFile", "ca"):
        m.pop(k, None)
    return cert, key, ca


def _userAuth(url: _URL, m: dict[str, object], where: str) -> AuthConfig | None:
    auth = None
    if url.user is not None:
        auth = AuthConfig(username=url.user, password=url.password or "")
    value = Metadata(m).getString("auth")
    if value and auth is None:
        auth = _decodeAuthParam(value, where)
    m.pop("auth", None)
    return auth


def _splitScheme(scheme: str) -> tuple[str, str]:
    scheme = names.SCHEME_ALIASES.get(scheme, scheme)
    parts = scheme.split("+")
    if len(parts) == 1:
        return parts[0], parts[0]
    if len(parts) == 2:
        return parts[0], parts[1]
    return "", ""


def _checkedScheme(scheme: str, text: str, upper: str, lower: str, fallbacks: tuple[str, str]) -> tuple[str, str]:
    """
    The C{(upper, lower)} types (handler and listener, or connector and
    dialer) a written scheme names, as GOST decides, except that a word no
    one knows is refused rather than re-meant: one word must name either
    kind, in C{A+B} A must be an C{upper} and B a C{lower}.  Known words are
    GOST's (implemented or not) and every registered plugin's.
    """
    uppers, lowers = typeNames((upper,)), typeNames((lower,))
    original = scheme
    scheme = names.SCHEME_ALIASES.get(scheme, scheme)
    parts = scheme.split("+")
    if len(parts) == 1:
        word = parts[0]
        if word not in uppers and word not in lowers:
            raise ConfigError(
                f"{text}: unknown scheme {original!r}: not a {upper} or {lower} type"
                + didYouMean(word, uppers | lowers, "{}://")
            )
        first = word if word in uppers else fallbacks[0]
        second = word if word in lowers else ("udp" if first == "ssu" else fallbacks[1])
        return first, second
    if len(parts) != 2:
        raise ConfigError(f"{text}: scheme {original!r} has more than one '+' ({upper}+{lower})")
    first, second = parts
    if first not in uppers:
        raise ConfigError(f"{text}: unknown {upper} {first!r}" + didYouMean(first, uppers))
    if second not in lowers:
        raise ConfigError(f"{text}: unknown {lower} {second!r}" + didYouMean(second, lowers))
    return first, second


def _normalise(text: str) -> tuple[str, bool]:
    """
    The URL with a scheme, and whether the scheme was written (C{:8080} and
    C{user:pass@:8080} get C{auto://}).
    """
    text = text.strip()
    if not text:
        raise ConfigError("empty URL")
    if text.startswith(":") or "://" not in text:
        return "auto://" + text, False
    return text, True


def parseServiceURL(cfg: Config, text: str) -> list[ServiceConfig]:
    """
    Parse one C{-L} URL into services (several for a port range), adding
    the objects it defines (bypasses, ...) to C{cfg}.
    """
    normalised, written = _normalise(text)
    url = _URL(normalised)
    if written:
        handler, listener = _checkedScheme(url.scheme, text, "handler", "listener", ("auto", "tcp"))
    else:
        handler, listener = "auto", "tcp"
    addrs = expandPortRange(url.host)

    remotes = url.path.strip("/")
    if remotes and handler != "relay":
        handler = listener if listener in names.FORWARD_LISTENERS else "forward"
    m: dict[str, object] = dict(url.query)
    auth = _userAuth(url, m, text)
    return _services(cfg, text, handler, listener, addrs, remotes, auth, m)


def parseServiceDescription(cfg: Config, spec: ListenSpec) -> list[ServiceConfig]:
    """
    One C{--listen DESCRIPTION} and its per-service flags as a service with
    the C{endpoint} listener: the same configuration a GOST URL with the
    same users, targets and query gives, C{addr} being the description.
    """
    text = spec.description
    if spec.error:
        raise ConfigError(spec.error)
    handler = spec.handler or "relay"

    if handler not in typeNames(("handler",)):
        raise ConfigError(f"{text}: --handler {handler!r}: unknown handler" + didYouMean(handler, typeNames(("handler",))))
    m: dict[str, object] = {}
    for key, value in spec.options:
        m.setdefault(key, value)
    auth: AuthConfig | None = None
    if len(spec.users) == 1 and not spec.usersFile:
        user, _, password = spec.users[0].partition(":")
        auth = AuthConfig(username=user, password=password)
    services = _services(cfg, text, handler, "endpoint", [text], ",".join(spec.targets), auth, m)
    if len(spec.users) > 1 or spec.usersFile:
        auther = AutherConfig(name=f"auther-{len(cfg.authers)}")
        for entry in spec.users:
            user, _, password = entry.partition(":")
            auther.auths.append(AuthConfig(username=user, password=password))
        if spec.usersFile:
            auther.file = AutherFileConfig(path=spec.usersFile)
        cfg.authers.append(auther)
        for svc in services:
            assert svc.handler is not None
            svc.handler.auther = auther.name
    return services


#: The listeners whose options a user may carry over to a description.
_STREAM_LISTENERS = ("tcp", "tls", "ws", "wss", "kcp")


def _listenerOnlyKeys(m: dict[str, object], handlerOptions: dict[str, str] | None) -> list[str]:
    """
    The keys of C{m} that a GOST stream listener reads and nothing else of
    a description service does: the endpoint's own arguments say those
    (C{--listen tcp:8420 --option backlog=50} would be ignored).
    """
    listenerOptions: set[str] = set()
    for name in _STREAM_LISTENERS:
        listenerOptions |= set(typeOptions("listener", name) or {})
    others = set(handlerOptions or {}) | set(SERVICE_OPTIONS) | SERVICE_URL_KEYS
    found = []
    for key in m:
        bare = key[len("listener.") :] if key.startswith("listener.") else key
        if bare in listenerOptions and bare not in others:
            found.append(key)
    return found


def _services(
    cfg: Config,
    text: str,
    handler: str,
    listener: str,
    addrs: list[str],
    remotes: str,
    auth: AuthConfig | None,
    m: dict[str, object],
) -> list[ServiceConfig]:
    scopes = {
        "handler": typeOptions("handler", handler),
        "listener": typeOptions("listener", listener),
        "service": SERVICE_OPTIONS,
    }
    checked = m
    if listener == "endpoint":
        checked = dict(m)
        for key in _listenerOnlyKeys(m, scopes["handler"]):
            del checked[key]
            cfg.warnings.append(
                f"{text}: option {key!r} is read by GOST's listeners; a description takes it as an argument of "
                "its endpoint (tcp:8420:backlog=50, ws:tcp\\:8080:path=/relay); ignored"
            )
    cfg.warnings.extend(unknownOptions(text, checked, scopes, SERVICE_URL_KEYS))
    nodes: list[ForwardNodeConfig] = []
    if remotes:
        for target in remotes.split(","):
            for addr in expandPortRange(target):
                nodes.append(ForwardNodeConfig(name=f"target-{len(nodes)}", addr=addr))

    services = [ServiceConfig(addr=addr) for addr in addrs]
    for i, svc in enumerate(services):
        if not nodes:
            break
        if len(services) == 1 or len(nodes) == 1:
            svc.forwarder = ForwarderConfig(nodes=list(nodes))
        elif i < len(nodes):
            svc.forwarder = ForwarderConfig(nodes=[nodes[i]])

    cert, key, ca = _takeTLSFiles(m)
    tls = TLSConfig(certFile=cert, keyFile=key, caFile=ca) if cert else None

    md = Metadata(m)
    if md.getString("dns"):
        m["dns"] = md.getString("dns").split(",")
    for key_ in ("interface", "netns", "netns.out"):
        if md.getString(key_):
            m["service." + key_] = md.getString(key_)
            m.pop(key_, None)
    for key_ in ("so_mark", "proxyProtocol"):
        if md.getInt(key_) > 0:
            m["service." + key_] = md.getInt(key_)
            m.pop(key_, None)

    selector = _parseSelector(m)

    serviceMd: dict[str, object] = {}
    handlerMd: dict[str, object] = {}
    listenerMd: dict[str, object] = {}
    for k, v in m.items():
        if k.startswith("service."):
            serviceMd[k[len("service.") :]] = v
        elif k.startswith("handler."):
            handlerMd[k[len("handler.") :]] = v
        elif k.startswith("listener."):
            listenerMd[k[len("listener.") :]] = v
        else:
            handlerMd[k] = v
            listenerMd[k] = v
            serviceMd[k] = v

    for svc in services:
        if svc.forwarder is not None:
            svc.forwarder.selector = selector
        svc.handler = HandlerConfig(type=handler, auth=_copyAuth(auth), metadata=dict(handlerMd))
        svc.listener = ListenerConfig(type=listener, tls=_copyTLS(tls), metadata=dict(listenerMd))
        if listener in ("ssh", "sshd"):
            svc.listener.auth, svc.handler.auth = svc.handler.auth, None
        svc.metadata = dict(serviceMd)
        svc.source = text
    return services


def _copyAuth(auth: AuthConfig | None) -> AuthConfig | None:
    return None if auth is None else AuthConfig(auth.username, auth.password, auth.file)


def _copyTLS(tls: TLSConfig | None) -> TLSConfig | None:
    if tls is None:
        return None
    return TLSConfig(tls.certFile, tls.keyFile, tls.caFile, tls.secure, tls.serverName)


def parseNodeURL(cfg: Config, text: str, index: int) -> HopConfig:
    """
    Parse one C{-F} URL into hop C{hop-<index>} with one node per
    comma-separated address.
    """
    normalised, written = _normalise(text)
    url = _URL(normalised)
    if written:
        connector, dialer = _checkedScheme(url.scheme, text, "connector", "dialer", ("http", "tcp"))
    else:
        connector, dialer = "http", "tcp"
    m: dict[str, object] = dict(url.query)
    scopes = {
        "connector": typeOptions("connector", connector),
        "dialer": typeOptions("dialer", dialer),
        "node": NODE_OPTIONS,
        "hop": {},
    }
    cfg.warnings.extend(unknownOptions(text, m, scopes, NODE_URL_KEYS))
    hop = HopConfig(name=f"hop-{index}", selector=_parseSelector(m))
    hop.bypass = _takeBypass(cfg, m)
    md = Metadata(m)
    hop.resolver, hop.hosts = _takeResolverAndHosts(cfg, m)
    if md.getString("interface"):
        m["hop.interface"] = md.getString("interface")
        m.pop("interface", None)
    for key in ("so_mark", "proxyProtocol"):
        if md.getInt(key) > 0:
            m["hop." + key] = md.getInt(key)
            m.pop(key, None)

    hopMd: dict[str, object] = {}
    for k, v in list(m.items()):
        if k.startswith(("node.", "connector.", "dialer.")):
            continue
        if k.startswith("hop."):
            hopMd[k[len("hop.") :]] = v
            del m[k]
            continue
        hopMd[k] = v
    hop.metadata = hopMd

    auth = _userAuth(url, m, text)
    md = Metadata(m)
    tls = TLSConfig(
        certFile=md.getString("tls.certFile", "certFile", "cert"),
        keyFile=md.getString("tls.keyFile", "keyFile", "key"),
        caFile=md.getString("tls.caFile", "caFile", "ca"),
        secure=md.getBool("tls.secure", "secure"),
        serverName=md.getString("tls.servername", "servername") or url.hostname,
    )
    for k in list(m):
        if k.lower() in {
            "tls.certfile", "certfile", "cert", "tls.keyfile", "keyfile", "key",
            "tls.cafile", "cafile", "ca", "tls.secure", "secure", "tls.servername", "servername",
        }:
            del m[k]
    tlsOrNone = tls if (tls.secure or tls.certFile or tls.caFile or tls.serverName) else None

    nodeMd: dict[str, object] = {}
    connectorMd: dict[str, object] = {}
    dialerMd: dict[str, object] = {}
    for k, v in m.items():
        if k.startswith("node."):
            nodeMd[k[len("node.") :]] = v
        elif k.startswith("connector."):
            connectorMd[k[len("connector.") :]] = v
        elif k.startswith("dialer."):
            dialerMd[k[len("dialer.") :]] = v
        else:
            nodeMd[k] = v
            connectorMd[k] = v
            dialerMd[k] = v

    for host in url.host.split(","):
        if not host:
            continue
        node = NodeConfig(
            name=f"node-{len(hop.nodes)}",
            addr=host,
            connector=ConnectorConfig(type=connector, auth=_copyAuth(auth), metadata=dict(connectorMd)),
            dialer=DialerConfig(type=dialer, tls=_copyTLS(tlsOrNone), metadata=dict(dialerMd)),
            metadata=dict(nodeMd),
        )
        if dialer in ("ssh", "sshd") and node.connector is not None and node.dialer is not None:
            node.dialer.auth, node.connector.auth = node.connector.auth, None
        node.source = text
        hop.nodes.append(node)
    if not hop.nodes:
        raise ConfigError(f"{text}: no node address")
    return hop


def _serviceObjects(cfg: Config, svc: ServiceConfig) -> None:
    """
    Turn the handler metadata keys GOST consumes into objects (retries,
    bypass, admission, resolver, hosts, limiters), as GOST does after
    naming the services.
    """
    assert svc.handler is not None
    mh = svc.handler.metadata
    md = Metadata(mh)
    if md.getInt("retries") > 0:
        svc.handler.retries = md.getInt("retries")
        mh.pop("retries", None)
    if md.getString("admission"):
        value = md.getString("admission")
        body: dict[str, object] = {"matchers": [s for s in value.lstrip("~").split(",") if s]}
        if value.startswith("~"):
            body["whitelist"] = True
        svc.admission = _takeNamed(cfg, mh, "admission", "admissions", body)
    svc.bypass = _takeBypass(cfg, mh)
    svc.resolver, svc.hosts = _takeResolverAndHosts(cfg, mh)
    limits = [md.getString(k) for k in ("limiter.in", "limiter.out", "limiter.conn.in", "limiter.conn.out")]
    if any(limits):
        # GOST writes "$ IN OUT" and, with no IN, "$  OUT", which its own
        # parser (and ours) reads as an IN limit: an absent IN is written
        # 0 (no limit) so that limiter.out alone limits what clients are
        # sent, as it says (docs/differences.md).
        body = {"limits": []}
        if limits[0] or limits[1]:
            body["limits"].append(f"$ {limits[0] or ('0' if limits[1] else '')} {limits[1]}")  # type: ignore[attr-defined]
        if limits[2] or limits[3]:
            body["limits"].append(f"$$ {limits[2] or ('0' if limits[3] else '')} {limits[3]}")  # type: ignore[attr-defined]
        svc.limiter = _takeNamed(cfg, mh, "limiter", "limiters", body)
        for k in ("limiter.in", "limiter.out", "limiter.conn.in", "limiter.conn.out"):
            mh.pop(k, None)
    if md.getInt("climiter") > 0:
        svc.climiter = _takeNamed(cfg, mh, "climiter", "climiters", {"limits": [f"$ {md.getInt('climiter')}"]})
    if md.getFloat("rlimiter") > 0:
        svc.rlimiter = _takeNamed(cfg, mh, "rlimiter", "rlimiters", {"limits": [f"$ {md.getFloat('rlimiter'):g}"]})


def buildConfigFromCommandLine(services: Sequence[str | ListenSpec], nodes: list[str]) -> Config:
    """
    GOST's C{BuildConfigFromCmd}: one chain C{chain-0} with a hop per C{-F},
    services C{service-N} that use it (on the listener for rtcp/rudp/runix,
    on the handler otherwise).  C{services} are C{-L} URLs, or
    L{ListenSpec}s for endpoint descriptions, in command-line order.
    """
    cfg = Config()
    chain = None
    if nodes:
        chain = ChainConfig(name="chain-0")
        cfg.chains.append(chain)
        for i, node in enumerate(nodes):
            chain.hops.append(parseNodeURL(cfg, node, i))
    built: list[ServiceConfig] = []
    for item in services:
        if isinstance(item, ListenSpec):
            built.extend(parseServiceDescription(cfg, item))
        elif item.strip():
            built.extend(parseServiceURL(cfg, item))
    for i, svc in enumerate(built):
        svc.name = f"service-{i}"
        assert svc.handler is not None and svc.listener is not None
        if chain is not None:
            if svc.listener.type in names.CHAINED_LISTENERS:
                svc.listener.chain = chain.name
            else:
                svc.handler.chain = chain.name
        cfg.services.append(svc)
        _serviceObjects(cfg, svc)
    return cfg
