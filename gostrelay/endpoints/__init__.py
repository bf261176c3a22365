"""
gostrelay from any Twisted program: endpoints and endpoint strings.

One module per concept:

  - L{gostrelay.endpoints.relay}: dialing through relay servers (the
    C{relay:} client string, L{chainEndpoint} from GOST C{-F} URLs);
  - L{gostrelay.endpoints.carriers}: C{gosttls:}, C{ws:}, C{wss:};
  - L{gostrelay.endpoints.kcp}: C{kcp:} (client and server);
  - L{gostrelay.endpoints.rtcp}: listening on a relay server (the C{rtcp:}
    server string, L{bindEndpoint} from GOST C{-F} URLs);
  - L{gostrelay.endpoints.proxies}: dialing through standard proxies
    (C{socks5:}, C{socks4:}, C{httpconnect:}, L{proxyEndpoint}).

The string parsers are registered by C{twisted/plugins/gostrelay_endpoints.py};
docs/twisted.md lists every prefix with examples.
"""

from gostrelay.endpoints.carriers import parseGostTLSClient, parseWebSocketClient, parseWebSocketServer
from gostrelay.endpoints.kcp import KCPClientEndpoint, KCPServerEndpoint
from gostrelay.endpoints.relay import chainEndpoint, parseRelayClient, relayEndpoint
from gostrelay.endpoints.rtcp import RemoteTCPServerEndpoint, bindEndpoint

__all__ = [
    "KCPClientEndpoint",
    "KCPServerEndpoint",
    "RemoteTCPServerEndpoint",
    "bindEndpoint",
    "chainEndpoint",
    "parseGostTLSClient",
    "parseRelayClient",
    "parseWebSocketClient",
    "parseWebSocketServer",
    "relayEndpoint",
]
