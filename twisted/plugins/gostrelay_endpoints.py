"""
Endpoint string plugins of gostrelay: C{relay:} (client), C{gosttls:}
(client), C{ws:} and C{wss:} (client and server).

Import-light: each parser imports gostrelay only when a description using
its prefix is parsed.
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
