"""
The types of gostrelay-echo, found by name through twisted.plugin.

Import-light: only gostrelay.registry is imported here; each factory is
named by a dotted string and imported when a configuration uses the type.
"""

from gostrelay.registry import TypePlugin

echoHandler = TypePlugin("handler", "echo", "gostrelay_echo.handler.EchoHandler")
srctcpDialer = TypePlugin("dialer", "srctcp", "gostrelay_echo.dialer.SourceTCPDialer")
