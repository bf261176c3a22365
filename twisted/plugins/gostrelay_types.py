"""
gostrelay's handler, listener, connector and dialer types, by GOST name.

Import-light on purpose: each entry names its factory as a string, imported
only when a configuration uses the type.
"""

from gostrelay.registry import TypePlugin

relayHandler = TypePlugin("handler", "relay", "gostrelay.handlers.relay.RelayHandler")
tcpListener = TypePlugin("listener", "tcp", "gostrelay.transports.tcp.TCPListener")
tcpDialer = TypePlugin("dialer", "tcp", "gostrelay.transports.tcp.TCPDialer")
relayConnector = TypePlugin("connector", "relay", "gostrelay.connectors.relay.RelayConnector")
tcpForwardHandler = TypePlugin("handler", "tcp", "gostrelay.handlers.forward.TCPForwardHandler", aliases=("forward",))
