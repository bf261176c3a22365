"""
The type names GOST knows, for the command line's fallback rules.

GOST turns a URL scheme into a handler and a listener (or a connector and a
dialer) by asking its registry whether the word names one; an unknown word
falls back (spec-relay.md 9.2, 9.3).  To print the same configuration as GOST
for every command line, we need GOST's registry of *names*, whether we
implement the type or not; which types we implement is the plugin registry's
business (L{gostrelay.registry}).
"""

from __future__ import annotations

HANDLERS = frozenset(
    """
    auto dns file forward http http2 http3 masque metrics red redir redirect redu
    relay router rtcp rudp runix serial sni socks socks4 socks4a socks5 ss ssu
    sshd tap tcp tun tunnel udp unix
    """.split()
)

LISTENERS = frozenset(
    """
    dns dtls ftcp grpc h2 h2c h3 http2 http3 icmp kcp mtcp mtls mws mwss ohttp
    otls pht phts quic red redir redirect redu rtcp rudp runix serial ssh sshd
    tap tcp tls tun udp unix wt ws wss
    """.split()
)

CONNECTORS = frozenset(
    """
    direct forward http http2 masque relay router serial sni socks socks4
    socks4a socks5 ss ssu sshd tcp tunnel unix virtual
    """.split()
)

DIALERS = frozenset(
    """
    direct dtls ftcp grpc h2 h2c h3 h3-masque http2 http3 icmp kcp mtcp mtls mws
    mwss ohttp otls pht phts quic serial ssh sshd tcp tls udp unix utls virtual
    wt ws wss
    """.split()
)

#: Scheme rewrites GOST applies before splitting C{handler+listener}.
SCHEME_ALIASES = {"https": "http+tls"}

#: Listeners whose handler, given forward targets, takes the listener's name.
FORWARD_LISTENERS = frozenset(
    "tcp udp rtcp rudp tun tap dns unix runix serial".split()
)

#: Listeners that take the chain themselves (they bind through it).
CHAINED_LISTENERS = frozenset("rtcp rudp runix".split())
