"""
Endpoint string plugins of gostrelay: C{relay:} (client).

Import-light: the parser imports gostrelay only when a description using
the prefix is parsed.
"""

from twisted.internet.interfaces import IStreamClientEndpointStringParserWithReactor
from twisted.plugin import IPlugin
from zope.interface import implementer


@implementer(IPlugin, IStreamClientEndpointStringParserWithReactor)
class _RelayClientParser:
    prefix = "relay"

    def parseStreamClient(self, reactor, *args, **kwargs):
        from gostrelay.endpoints import parseRelayClient

        return parseRelayClient(reactor, *args, **kwargs)


relayClientParser = _RelayClientParser()
