"""
The endpoint listener: a service listening on any Twisted server endpoint
description (C{twistd relay --listen tcp:8420}, C{ssl:8443:privateKey=...},
C{unix:/run/relay.sock}, C{systemd:domain=INET:index=0}, our C{ws:} and
C{wss:}, or a third party's prefix found through L{twisted.plugin}).

The description is the service's C{addr}; the listener is C{endpoint}.  It
is a listener like C{tcp}: the service hands it the same wrapped handler
(connection tracking, limits, metrics, graceful stop), so everything the
accept path does for tcp it does here.
"""

from __future__ import annotations

import os
import re
from typing import Any

from twisted.internet.endpoints import serverFromString
from twisted.internet.interfaces import IProtocolFactory, IStreamServerEndpoint
from zope.interface import implementer

from gostrelay.config.listen import firstField
from gostrelay.config.model import ConfigError, ServiceConfig
from gostrelay.interfaces import IListener
from gostrelay.registry import ensureOwnPlugins


def endpointFromDescription(reactor: Any, description: str, where: str) -> IStreamServerEndpoint:
    """
    C{serverFromString}, with every way a description can be wrong (an
    unknown prefix, a bad argument, an unreadable key or certificate) as
    one L{ConfigError} line naming it.
    """
    ensureOwnPlugins()
    prefix = "" if where == description else f"{where}: "
    _checkTLSDirectory(description, prefix)
    try:
        return serverFromString(reactor, description)  # type: ignore[no-any-return]
    except ConfigError as e:
        raise ConfigError(f"{prefix}{e}") from None
    except OSError as e:
        name = f" {e.filename}" if getattr(e, "filename", None) else ""
        raise ConfigError(f"{prefix}{description}: cannot read{name}: {e.strerror or e}") from None
    except Exception as e:
        reason = _reason(e, description)
        if description.startswith("systemd:") and isinstance(e, (IndexError, KeyError)):
            reason = "no such inherited socket (LISTEN_FDS, LISTEN_FDNAMES: started by systemd socket activation?)"
        raise ConfigError(f"{prefix}{description}: {reason}") from None


def _checkTLSDirectory(description: str, prefix: str) -> None:
    """
    Twisted's C{tls:} server endpoint takes a directory of PEM files and
    C{port=} (default 443): C{tls:8443} would listen on 443 with no
    certificate.  Refuse a first argument that is not a directory.
    """
    kind, rest = firstField(description)
    if kind != "tls":
        return
    path, _ = firstField(rest)
    if "=" in path:
        return  # path= given as a keyword: Twisted checks it
    path = path.replace("\\:", ":")
    if not os.path.isdir(path):
        raise ConfigError(
            f"{prefix}{description}: Twisted's tls: endpoint takes a directory of PEM files and port= "
            f"(tls:/etc/relay/certs:port=8443); {path!r} is not a directory. "
            "For relay over GOST's tls listener write -L relay+tls://:8443"
        )


#: The arguments of TLS server endpoints (Twisted's ssl:, our wss:) that
#: name a PEM file, for a line saying which file could not be loaded.
_PEM_ARGUMENTS = ("privateKey", "certKey", "extraCertChain", "dhParameters", "keyFile", "certFile", "caFile")


def _pemFiles(description: str) -> list[str]:
    """
    The C{name=path} arguments of C{description} that name PEM files (the
    key file defaults to C{server.pem} in Twisted's C{ssl:}).
    """
    found = []
    rest = description
    while rest:
        field, rest = firstField(rest)
        name, eq, value = field.partition("=")
        if eq and name in _PEM_ARGUMENTS:
            found.append(f"{name}={value}")
    return found


def _reason(e: Exception, description: str = "") -> str:
    text = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    unexpected = re.search(r"unexpected keyword argument '([^']*)'", text)
    if isinstance(e, TypeError) and unexpected:
        return f"unknown argument {unexpected.group(1)!r}"
    if isinstance(e, TypeError) and "missing" in text and "required positional argument" in text:
        return "missing an argument (an inner description needs its ':' and '=' escaped as '\\:' and '\\=')"
    if type(e).__module__.startswith("OpenSSL"):
        # pyOpenSSL's errors are lists of (library, function, reason).
        args = e.args[0] if e.args else None
        if isinstance(args, list) and args and isinstance(args[-1], tuple):
            library, _, problem = (str(part) for part in args[-1])
            files = ", ".join(_pemFiles(description)) or "privateKey=server.pem"
            text = f"cannot load the TLS key or certificate ({files}): not a PEM key and certificate ({library}: {problem})"
    return text


@implementer(IListener)
class EndpointListener:
    """
    Options: none of its own; the description carries the endpoint's
    (C{backlog=}, C{interface=}, C{privateKey=}, ...).
    """

    def __init__(self, reactor: Any, service: ServiceConfig, context: Any) -> None:
        self.description = service.addr
        where = service.source or service.name
        if not self.description:
            raise ConfigError(f"{where}: the endpoint listener needs the description in addr (e.g. addr: tcp:8420)")
        self.endpoint = endpointFromDescription(reactor, self.description, where)

    def listen(self, factory: IProtocolFactory) -> Any:
        return self.endpoint.listen(factory)
