"""
The plugins of gostrelay-echo, found through twisted.plugin:

  - two gostrelay types by name: handler C{echo}, dialer C{srctcp};
  - one endpoint string: C{srctcp:HOST:PORT:source=ADDR} (client).

Import-light: only gostrelay.registry and Twisted's interfaces are imported
here; each factory is named by a dotted string and imported when used.
"""

from twisted.internet.interfaces import IStreamClientEndpointStringParserWithReactor
from twisted.plugin import IPlugin
from zope.interface import implementer

from gostrelay.registry import TypePlugin

# options: the metadata keys each type reads and their kind of value, so
# that gostrelay warns about a misspelt option and refuses a bad value.
echoHandler = TypePlugin("handler", "echo", "gostrelay_echo.handler.EchoHandler", options={"idleTimeout": "duration"})
srctcpDialer = TypePlugin("dialer", "srctcp", "gostrelay_echo.dialer.SourceTCPDialer", options={"source": "string"})


@implementer(IPlugin, IStreamClientEndpointStringParserWithReactor)
class _SourceTCPParser:
    prefix = "srctcp"

    def parseStreamClient(self, reactor, *args, **kwargs):  # type: ignore[no-untyped-def]
        from gostrelay_echo.dialer import parseSourceTCPClient

        return parseSourceTCPClient(reactor, *args, **kwargs)


srctcpClientParser = _SourceTCPParser()
