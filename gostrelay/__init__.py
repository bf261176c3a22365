"""
gostrelay: the GOST relay protocol, and the tunnel services around it, on Twisted.

The package is organised in layers (see docs/design.md): sans-IO wire codecs in
L{gostrelay.wire}, the configuration model in L{gostrelay.config}, and Twisted
protocols for handlers, listeners, connectors and dialers, assembled into
services by L{gostrelay.build}.
"""

__version__ = "0.1.0"
