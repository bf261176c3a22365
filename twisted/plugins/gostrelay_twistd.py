"""
C{twistd relay}: gostrelay's services under twistd.

Import-light: the real module is imported only when the plugin is used.
"""

from twisted.application.service import ServiceMaker

gostrelayRelay = ServiceMaker(
    "gostrelay",
    "gostrelay.tap",
    "GOST relay services: --listen DESCRIPTION (tcp:8420, ssl:..., unix:...) or -L URL, -F chain nodes, -C files.",
    "relay",
)
