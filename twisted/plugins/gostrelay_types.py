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
autoHandler = TypePlugin("handler", "auto", "gostrelay.handlers.proxy.AutoHandler")
httpHandler = TypePlugin("handler", "http", "gostrelay.handlers.proxy.HTTPHandler")
socks5Handler = TypePlugin("handler", "socks5", "gostrelay.handlers.proxy.SOCKS5Handler", aliases=("socks",))
socks4Handler = TypePlugin("handler", "socks4", "gostrelay.handlers.proxy.SOCKS4Handler", aliases=("socks4a",))
udpListener = TypePlugin("listener", "udp", "gostrelay.transports.udp.UDPListener")
udpForwardHandler = TypePlugin("handler", "udp", "gostrelay.handlers.udpforward.UDPForwardHandler")
rtcpListener = TypePlugin("listener", "rtcp", "gostrelay.transports.remote.RTCPListener")
rudpListener = TypePlugin("listener", "rudp", "gostrelay.transports.remote.RUDPListener")
rtcpHandler = TypePlugin("handler", "rtcp", "gostrelay.handlers.forward.TCPForwardHandler")
rudpHandler = TypePlugin("handler", "rudp", "gostrelay.handlers.udpforward.UDPForwardHandler")
tlsListener = TypePlugin("listener", "tls", "gostrelay.transports.tls.TLSListener")
tlsDialer = TypePlugin("dialer", "tls", "gostrelay.transports.tls.TLSDialer")
wsListener = TypePlugin("listener", "ws", "gostrelay.transports.ws.WSListener")
wssListener = TypePlugin("listener", "wss", "gostrelay.transports.ws.WSSListener")
wsDialer = TypePlugin("dialer", "ws", "gostrelay.transports.ws.WSDialer")
wssDialer = TypePlugin("dialer", "wss", "gostrelay.transports.ws.WSSDialer")
kcpListener = TypePlugin("listener", "kcp", "gostrelay.transports.kcp.KCPListener")
kcpDialer = TypePlugin("dialer", "kcp", "gostrelay.transports.kcp.KCPDialer")
httpConnector = TypePlugin("connector", "http", "gostrelay.connectors.http.HTTPConnector")
socks5Connector = TypePlugin("connector", "socks5", "gostrelay.connectors.socks.SOCKS5Connector", aliases=("socks",))
socks4Connector = TypePlugin("connector", "socks4", "gostrelay.connectors.socks.SOCKS4Connector", aliases=("socks4a",))
sniHandler = TypePlugin("handler", "sni", "gostrelay.handlers.proxy.SNIHandler")
