"""
gostrelay's handler, listener, connector and dialer types, by GOST name.

Import-light on purpose: each entry names its factory as a string, imported
only when a configuration uses the type.  Each also lists the metadata keys
it reads, with the kind of value: the command line warns about a key no part
of the service reads (a typo) and refuses a value that is not of its kind.
"""

from gostrelay.registry import TypePlugin

#: The smux session options (gostrelay.mux), read by relay BIND on both ends.
_MUX = {
    "mux.version": "int",
    "mux.keepaliveDisabled": "bool",
    "mux.keepaliveInterval": "duration",
    "mux.keepaliveTimeout": "duration",
    "mux.maxFrameSize": "int",
    "mux.maxReceiveBuffer": "int",
    "mux.maxStreamBuffer": "int",
    "mux.type": "string",
}

#: What every stream handler that pipes bytes reads.
_PIPE = {"idleTimeout": "duration", "splice": "bool", "spliceThreshold": "int", "halfCloseTimeout": "duration"}

_RELAY_HANDLER = {
    "readTimeout": "duration",
    "bind": "bool",
    "nodelay": "bool",
    "denyPrivate": "bool",
    "bindPorts": "string",
    **_PIPE,
    **_MUX,
}
_PROXY_HANDLER = {
    "readTimeout": "duration",
    "authBasicRealm": "string",
    "udp": "bool",
    "ttl": "duration",
    "denyPrivate": "bool",
    **_PIPE,
}
_STREAM_LISTENER = {"backlog": "int"}
_UDP_LISTENER = {
    "ttl": "duration",
    "keepalive.ttl": "duration",
    "keepAlive": "bool",
    "readBufferSize": "int",
    "udp.bufferSize": "int",
    "readQueueSize": "int",
    "recvQueueSize": "int",
    "maxSessions": "int",
    "maxSessionsPerIP": "int",
}
_WS_LISTENER = {"backlog": "int", "path": "string", "ws.path": "string", "header": "any", "ws.header": "any"}
_WS_DIALER = {
    "path": "string",
    "ws.path": "string",
    "host": "string",
    "ws.host": "string",
    "keepalive": "bool",
    "ws.keepalive": "bool",
    "ttl": "duration",
    "ws.ttl": "duration",
    "keepalive.interval": "duration",
    "header": "any",
    "ws.header": "any",
}
_KCP = {
    "kcp.configFile": "string",
    "configFile": "string",
    "c": "string",
    "kcp.config": "any",
    "config": "any",
    "kcp.key": "string",
    "kcp.crypt": "string",
    "kcp.mode": "string",
    "kcp.mtu": "int",
    "kcp.sndwnd": "int",
    "kcp.rcvwnd": "int",
    "kcp.nocomp": "bool",
    "kcp.smuxver": "int",
    "kcp.interval": "int",
    "kcp.smuxbuf": "int",
    "kcp.streambuf": "int",
    "kcp.keepalive": "int",
    "kcp.tcp": "bool",
    "tcp": "bool",
    "maxSessions": "int",
}
_REMOTE_LISTENER = {"maxRetryDelay": "duration", **_MUX}
_RELAY_CONNECTOR = {
    "nodelay": "bool",
    "quietDelay": "duration",
    "responseWait": "duration",
    "connectTimeout": "duration",
    **_MUX,
}

relayHandler = TypePlugin("handler", "relay", "gostrelay.handlers.relay.RelayHandler", options=_RELAY_HANDLER)
tcpListener = TypePlugin("listener", "tcp", "gostrelay.transports.tcp.TCPListener", options=_STREAM_LISTENER)
endpointListener = TypePlugin(
    "listener", "endpoint", "gostrelay.transports.endpoint.EndpointListener", options={}
)
tcpDialer = TypePlugin("dialer", "tcp", "gostrelay.transports.tcp.TCPDialer", options={})
relayConnector = TypePlugin(
    "connector", "relay", "gostrelay.connectors.relay.RelayConnector", options=_RELAY_CONNECTOR
)
tcpForwardHandler = TypePlugin(
    "handler", "tcp", "gostrelay.handlers.forward.TCPForwardHandler", aliases=("forward",), options=_PIPE
)
autoHandler = TypePlugin("handler", "auto", "gostrelay.handlers.proxy.AutoHandler", options=_PROXY_HANDLER)
httpHandler = TypePlugin("handler", "http", "gostrelay.handlers.proxy.HTTPHandler", options=_PROXY_HANDLER)
socks5Handler = TypePlugin(
    "handler", "socks5", "gostrelay.handlers.proxy.SOCKS5Handler", aliases=("socks",), options=_PROXY_HANDLER
)
socks4Handler = TypePlugin(
    "handler", "socks4", "gostrelay.handlers.proxy.SOCKS4Handler", aliases=("socks4a",), options=_PROXY_HANDLER
)
udpListener = TypePlugin("listener", "udp", "gostrelay.transports.udp.UDPListener", options=_UDP_LISTENER)
udpForwardHandler = TypePlugin("handler", "udp", "gostrelay.handlers.udpforward.UDPForwardHandler", options={})
rtcpListener = TypePlugin("listener", "rtcp", "gostrelay.transports.remote.RTCPListener", options=_REMOTE_LISTENER)
rudpListener = TypePlugin(
    "listener", "rudp", "gostrelay.transports.remote.RUDPListener", options={**_REMOTE_LISTENER, **_UDP_LISTENER}
)
rtcpHandler = TypePlugin("handler", "rtcp", "gostrelay.handlers.forward.TCPForwardHandler", options=_PIPE)
rudpHandler = TypePlugin("handler", "rudp", "gostrelay.handlers.udpforward.UDPForwardHandler", options={})
tlsListener = TypePlugin("listener", "tls", "gostrelay.transports.tls.TLSListener", options=_STREAM_LISTENER)
tlsDialer = TypePlugin("dialer", "tls", "gostrelay.transports.tls.TLSDialer", options={})
wsListener = TypePlugin("listener", "ws", "gostrelay.transports.ws.WSListener", options=_WS_LISTENER)
wssListener = TypePlugin("listener", "wss", "gostrelay.transports.ws.WSSListener", options=_WS_LISTENER)
wsDialer = TypePlugin("dialer", "ws", "gostrelay.transports.ws.WSDialer", options=_WS_DIALER)
wssDialer = TypePlugin("dialer", "wss", "gostrelay.transports.ws.WSSDialer", options=_WS_DIALER)
kcpListener = TypePlugin("listener", "kcp", "gostrelay.transports.kcp.KCPListener", options=_KCP)
kcpDialer = TypePlugin("dialer", "kcp", "gostrelay.transports.kcp.KCPDialer", options=_KCP)
httpConnector = TypePlugin(
    "connector", "http", "gostrelay.connectors.http.HTTPConnector", options={"timeout": "duration"}
)
socks5Connector = TypePlugin(
    "connector", "socks5", "gostrelay.connectors.socks.SOCKS5Connector", aliases=("socks",),
    options={"timeout": "duration", "relay": "string"},
)
socks4Connector = TypePlugin(
    "connector", "socks4", "gostrelay.connectors.socks.SOCKS4Connector", aliases=("socks4a",),
    options={"timeout": "duration", "disable4a": "bool"},
)
sniHandler = TypePlugin("handler", "sni", "gostrelay.handlers.proxy.SNIHandler", options=_PROXY_HANDLER)
