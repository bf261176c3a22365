"""
Endpoint string plugins of gostrelay: C{relay:} (client), C{gosttls:}
(client), C{ws:} and C{wss:} (client and server), C{kcp:} (client and
server), C{rtcp:} (server).

Import-light: each parser imports gostrelay only when a description using
its prefix is parsed.  To add a prefix, add one line at the end: a
L{_ClientParser} or L{_ServerParser} naming the prefix and the dotted name
of a function C{(reactor, *args, **kwargs)} returning the endpoint.
"""

from twisted.internet.interfaces import (
    IStreamClientEndpointStringParserWithReactor,
    IStreamServerEndpointStringParser,
)
from twisted.plugin import IPlugin
from zope.interface import implementer


@implementer(IPlugin, IStreamClientEndpointStringParserWithReactor)
class _ClientParser:
    def __init__(self, prefix, function, **options):
        self.prefix = prefix
        self.function = function
        self.options = options

    def parseStreamClient(self, reactor, *args, **kwargs):
        from twisted.python.reflect import namedAny

        return namedAny(self.function)(reactor, *args, **self.options, **kwargs)


@implementer(IPlugin, IStreamServerEndpointStringParser)
class _ServerParser:
    def __init__(self, prefix, function, **options):
        self.prefix = prefix
        self.function = function
        self.options = options

    def parseStreamServer(self, reactor, *args, **kwargs):
        from twisted.python.reflect import namedAny

        return namedAny(self.function)(reactor, *args, **self.options, **kwargs)


relayClientParser = _ClientParser("relay", "gostrelay.endpoints.relay.parseRelayClient")
gostTLSClientParser = _ClientParser("gosttls", "gostrelay.endpoints.carriers.parseGostTLSClient")
wsClientParser = _ClientParser("ws", "gostrelay.endpoints.carriers.parseWebSocketClient")
wssClientParser = _ClientParser("wss", "gostrelay.endpoints.carriers.parseWebSocketClient", overTLS=True)
wsServerParser = _ServerParser("ws", "gostrelay.endpoints.carriers.parseWebSocketServer")
wssServerParser = _ServerParser("wss", "gostrelay.endpoints.carriers.parseWebSocketServer", overTLS=True)
kcpClientParser = _ClientParser("kcp", "gostrelay.endpoints.kcp.parseKCPClient")
kcpServerParser = _ServerParser("kcp", "gostrelay.endpoints.kcp.parseKCPServer")
rtcpServerParser = _ServerParser("rtcp", "gostrelay.endpoints.rtcp.parseRemoteTCPServer")
# Standard proxies as hops (gostrelay.endpoints.proxies): socks5:, socks4:, httpconnect:.
socks5ClientParser = _ClientParser("socks5", "gostrelay.endpoints.proxies.parseProxyClient", kind="socks5")
socks4ClientParser = _ClientParser("socks4", "gostrelay.endpoints.proxies.parseProxyClient", kind="socks4")
httpConnectClientParser = _ClientParser("httpconnect", "gostrelay.endpoints.proxies.parseProxyClient", kind="httpconnect")
