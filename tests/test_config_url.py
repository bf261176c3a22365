"""
GOST's command-line URLs (spec-relay.md 9.2, 9.3) and metadata values
(13.1): L{gostrelay.config.url} and L{gostrelay.config.metadata}.
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from gostrelay.config.metadata import Metadata, formatGoDuration, parseGoDuration
from gostrelay.config.model import Config, ConfigError, ServiceConfig
from gostrelay.config.url import (
    buildConfigFromCommandLine,
    expandPortRange,
    parseNodeURL,
    parseServiceURL,
)


def services(*urls: str, nodes: tuple[str, ...] = ()) -> list[ServiceConfig]:
    return buildConfigFromCommandLine(list(urls), list(nodes)).services


def one(url: str, nodes: tuple[str, ...] = ()) -> ServiceConfig:
    svcs = services(url, nodes=nodes)
    assert len(svcs) == 1, svcs
    return svcs[0]


class ServiceSchemeTests(SynchronousTestCase):
    """
    C{-L} schemes: C{handler+listener}, fallbacks, aliases.
    """

    def assertTypes(self, url: str, handler: str, listener: str) -> ServiceConfig:
        svc = one(url)
        assert svc.handler is not None and svc.listener is not None
        self.assertEqual((svc.handler.type, svc.listener.type), (handler, listener), url)
        return svc

    def test_emptyHost(self) -> None:
        """
        C{:8080} is C{auto://:8080}: handler auto, listener tcp.
        """
        svc = self.assertTypes(":8080", "auto", "tcp")
        self.assertEqual(svc.addr, ":8080")
        self.assertEqual(svc.name, "service-0")
        self.assertIsNone(svc.forwarder)
        self.assertIsNone(svc.handler.auth)  # type: ignore[union-attr]
        self.assertEqual(svc.metadata, {})

    def test_noScheme(self) -> None:
        """
        Without C{://} the whole text is the address of an auto service.
        """
        svc = self.assertTypes("127.0.0.1:8080", "auto", "tcp")
        self.assertEqual(svc.addr, "127.0.0.1:8080")

    def test_ipv6Literal(self) -> None:
        """
        An IPv6 literal keeps its brackets in the service address.
        """
        svc = self.assertTypes("relay://[::1]:8420", "relay", "tcp")
        self.assertEqual(svc.addr, "[::1]:8420")
        svc = self.assertTypes("[::1]:8080", "auto", "tcp")
        self.assertEqual(svc.addr, "[::1]:8080")

    def test_relay(self) -> None:
        """
        C{relay} alone: relay handler on tcp (no listener named relay).
        """
        self.assertTypes("relay://:8420", "relay", "tcp")

    def test_relayTransports(self) -> None:
        """
        C{relay+X} picks the listener X.
        """
        for listener in ("tls", "ws", "wss", "kcp", "quic", "mwss"):
            self.assertTypes(f"relay+{listener}://:8420", "relay", listener)

    def test_sameWordBoth(self) -> None:
        """
        A single word names both when it is both.
        """
        for word in ("tcp", "udp", "rtcp", "rudp"):
            self.assertTypes(f"{word}://:1", word, word)

    def test_unknownWords(self) -> None:
        """
        A word no one knows is refused, naming it and the nearest known
        names, rather than re-meant (GOST makes it auto or tcp: a typo of
        relay would start an open proxy, relay+tsl plain relay).
        """
        for url, named, hint in (
            ("foo://:1", "'foo'", None),
            ("relai://:12390", "'relai'", "relay://"),
            ("relay+tsl://:1", "listener 'tsl'", "tls"),
            ("rleay+tls://:1", "handler 'rleay'", "relay"),
        ):
            e = self.assertRaises(ConfigError, services, url)
            self.assertIn(url, str(e))
            self.assertIn(named, str(e))
            if hint:
                self.assertIn(f"did you mean {hint}", str(e))
        # One word names a handler, a listener or both, as in GOST.
        self.assertTypes("socks5://:1080", "socks5", "tcp")
        self.assertTypes("tls://:443", "auto", "tls")
        self.assertTypes("ws://:80", "auto", "ws")
        self.assertTypes("tcp://:2", "tcp", "tcp")

    def test_schemeCaseInsensitive(self) -> None:
        """
        Go's URL parser lower-cases the scheme.
        """
        self.assertTypes("RELAY+TLS://:1", "relay", "tls")

    def test_https(self) -> None:
        """
        C{https} is C{http+tls}.
        """
        self.assertTypes("https://:443", "http", "tls")

    def test_tooManyPlusses(self) -> None:
        """
        C{a+b+c} names nothing: refused (GOST: auto on tcp).
        """
        e = self.assertRaises(ConfigError, services, "relay+tls+ws://:1")
        self.assertIn("more than one '+'", str(e))

    def test_emptyURLsSkipped(self) -> None:
        """
        Blank C{-L} values are ignored; numbering counts only real ones.
        """
        svcs = services("", "relay://:1", "  ", ":2")
        self.assertEqual([s.name for s in svcs], ["service-0", "service-1"])
        self.assertEqual([s.addr for s in svcs], [":1", ":2"])

    def test_sourceIsTheURL(self) -> None:
        """
        Each service remembers its URL, for messages.
        """
        self.assertEqual(one("relay://:8420?bind=true").source, "relay://:8420?bind=true")


class ForwardTargetTests(SynchronousTestCase):
    """
    The path of a C{-L} URL: forward targets, and the handler they imply.
    """

    def test_targetsMakeForwarder(self) -> None:
        svc = one("tcp://:2222/h1:22,h2:22")
        assert svc.forwarder is not None
        self.assertEqual([(n.name, n.addr) for n in svc.forwarder.nodes], [("target-0", "h1:22"), ("target-1", "h2:22")])
        self.assertIsNone(svc.forwarder.selector)

    def test_portRangeService(self) -> None:
        """
        C{tcp://:8000-8002/:22}: three services, each forwarding to :22.
        """
        svcs = services("tcp://:8000-8002/:22")
        self.assertEqual([s.name for s in svcs], ["service-0", "service-1", "service-2"])
        self.assertEqual([s.addr for s in svcs], [":8000", ":8001", ":8002"])
        for svc in svcs:
            assert svc.forwarder is not None and svc.handler is not None and svc.listener is not None
            self.assertEqual([(n.name, n.addr) for n in svc.forwarder.nodes], [("target-0", ":22")])
            self.assertEqual((svc.handler.type, svc.listener.type), ("tcp", "tcp"))
        # Separate objects: changing one service does not change another.
        svcs[0].handler.metadata["x"] = "1"  # type: ignore[union-attr]
        svcs[0].forwarder.nodes.append(svcs[0].forwarder.nodes[0])  # type: ignore[union-attr]
        self.assertEqual(svcs[1].handler.metadata, {})  # type: ignore[union-attr]
        self.assertEqual(len(svcs[1].forwarder.nodes), 1)  # type: ignore[union-attr]

    def test_portRangePairsTargets(self) -> None:
        """
        A port-range service with several targets pairs them 1:1, the
        targets keeping their global names.
        """
        svcs = services("tcp://:8000-8002/:22,:23,:24")
        self.assertEqual(
            [[(n.name, n.addr) for n in s.forwarder.nodes] for s in svcs],  # type: ignore[union-attr]
            [[("target-0", ":22")], [("target-1", ":23")], [("target-2", ":24")]],
        )

    def test_portRangeFewerTargets(self) -> None:
        """
        With fewer targets than ports, the extra services get no forwarder
        (as in GOST).
        """
        svcs = services("tcp://:8000-8002/:22,:23")
        self.assertEqual(len(svcs), 3)
        self.assertEqual(svcs[1].forwarder.nodes[0].addr, ":23")  # type: ignore[union-attr]
        self.assertIsNone(svcs[2].forwarder)

    def test_targetPortRange(self) -> None:
        """
        A target may itself be a port range: one target per port.
        """
        svc = one("tcp://:2222/h:22-24")
        self.assertEqual(
            [(n.name, n.addr) for n in svc.forwarder.nodes],  # type: ignore[union-attr]
            [("target-0", "h:22"), ("target-1", "h:23"), ("target-2", "h:24")],
        )

    def test_nonRelayHandlerWithTargetsOnForwardListener(self) -> None:
        """
        With targets, a non-relay handler takes the listener's name when
        the listener is tcp/udp/rtcp/rudp/... (spec 9.2): C{socks5} on the
        default tcp listener becomes C{tcp}.
        """
        svc = one("socks5://:1080/x:1")
        self.assertEqual((svc.handler.type, svc.listener.type), ("tcp", "tcp"))  # type: ignore[union-attr]
        svc = one("auto+udp://:53/x:53")
        self.assertEqual((svc.handler.type, svc.listener.type), ("udp", "udp"))  # type: ignore[union-attr]

    def test_nonRelayHandlerWithTargetsOnOtherListener(self) -> None:
        """
        ... and C{forward} on any other listener.
        """
        for url in ("socks5+tls://:1080/x:1", "http+ws://:80/x:1", "https://:443/x:1"):
            svc = one(url)
            self.assertEqual(svc.handler.type, "forward", url)  # type: ignore[union-attr]

    def test_relayKeepsRelay(self) -> None:
        """
        Relay forward mode: the relay handler stays relay on any listener.
        """
        for url in ("relay://:8420/:53", "relay+tls://:8420/:53", "relay+ws://:8420/a:1,b:2"):
            svc = one(url)
            self.assertEqual(svc.handler.type, "relay", url)  # type: ignore[union-attr]
            self.assertIsNotNone(svc.forwarder)

    def test_targetsNotDecoded(self) -> None:
        """
        Targets are taken from the escaped path, as GOST does.
        """
        svc = one("tcp://:1/a%2Cb:1")
        self.assertEqual([n.addr for n in svc.forwarder.nodes], ["a%2Cb:1"])  # type: ignore[union-attr]


class ServiceQueryTests(SynchronousTestCase):
    """
    userinfo, C{auth=}, query keys and their scopes on C{-L}.
    """

    def test_userinfo(self) -> None:
        svc = one("relay://user:pass@:8420")
        self.assertEqual((svc.handler.auth.username, svc.handler.auth.password), ("user", "pass"))  # type: ignore[union-attr]
        self.assertIsNone(svc.listener.auth)  # type: ignore[union-attr]

    def test_userinfoPercentDecoded(self) -> None:
        svc = one("relay://us%40er:p%3Ass@:1")
        self.assertEqual((svc.handler.auth.username, svc.handler.auth.password), ("us@er", "p:ss"))  # type: ignore[union-attr]

    def test_userinfoLastAt(self) -> None:
        """
        The host starts after the last C{@}; the password is everything
        after the first C{:}.
        """
        svc = one("relay://user:p@ss:w@:1")
        self.assertEqual(svc.addr, ":1")
        self.assertEqual((svc.handler.auth.username, svc.handler.auth.password), ("user", "p@ss:w"))  # type: ignore[union-attr]

    def test_userWithoutPassword(self) -> None:
        svc = one("relay://user@:1")
        self.assertEqual((svc.handler.auth.username, svc.handler.auth.password), ("user", ""))  # type: ignore[union-attr]

    def test_authParam(self) -> None:
        """
        C{?auth=base64(user:pass)} gives the auth when there is no userinfo,
        and leaves every metadata map.
        """
        svc = one("relay://:1?auth=dXNlcjpwYXNz")  # user:pass
        self.assertEqual((svc.handler.auth.username, svc.handler.auth.password), ("user", "pass"))  # type: ignore[union-attr]
        for md in (svc.metadata, svc.handler.metadata, svc.listener.metadata):  # type: ignore[union-attr]
            self.assertNotIn("auth", md)

    def test_authParamURLSafeUnpadded(self) -> None:
        """
        GOST tries raw URL-safe base64 first: no padding needed.
        """
        svc = one("relay://:1?auth=dTpw")  # u:p
        self.assertEqual((svc.handler.auth.username, svc.handler.auth.password), ("u", "p"))  # type: ignore[union-attr]
        svc = one("relay://:1?auth=dXNlcg")  # "user": no colon, no password
        self.assertEqual((svc.handler.auth.username, svc.handler.auth.password), ("user", ""))  # type: ignore[union-attr]

    def test_authParamIgnoredWithUserinfo(self) -> None:
        svc = one("relay://alice:a@:1?auth=dXNlcjpwYXNz")
        self.assertEqual((svc.handler.auth.username, svc.handler.auth.password), ("alice", "a"))  # type: ignore[union-attr]
        self.assertNotIn("auth", svc.handler.metadata)  # type: ignore[union-attr]

    def test_authParamNotBase64(self) -> None:
        """
        BUG: an C{auth=} value that is not base64 must be refused, as GOST
        refuses it (Go's base64 decoders reject C{*} and C{:}; GOST's
        BuildConfigFromCmd returns the error).  _decodeAuthParam uses
        Python's non-validating b64decode, which silently drops the bad
        characters: C{-L "relay://:1?auth=***"} gives an auth with an empty
        username, i.e. NO authentication (an open relay, where the user
        asked for one), and C{auth=user:pass} (a plausible mistake) gives a
        garbage user name accepting any password.  Same for C{-F}.
        """
        for value in ("***", "user:pass"):
            self.assertRaises(ConfigError, buildConfigFromCommandLine, [f"relay://:1?auth={value}"], [])
            self.assertRaises(ConfigError, buildConfigFromCommandLine, [":1"], [f"relay://h:1?auth={value}"])

    def test_firstValueWins(self) -> None:
        svc = one("relay://:1?a=1&a=2&b=&b=x")
        self.assertEqual(svc.handler.metadata, {"a": "1", "b": ""})  # type: ignore[union-attr]

    def test_valuesAreStrings(self) -> None:
        svc = one("relay://:1?bind=true&n=3")
        self.assertEqual(svc.handler.metadata, {"bind": "true", "n": "3"})  # type: ignore[union-attr]

    def test_scopes(self) -> None:
        """
        C{service.}, C{handler.}, C{listener.} keys go to their scope only,
        prefix stripped; the others to all three.
        """
        svc = one("relay://:1?service.s=1&handler.h=2&listener.l=3&x=4")
        self.assertEqual(svc.metadata, {"s": "1", "x": "4"})
        self.assertEqual(svc.handler.metadata, {"h": "2", "x": "4"})  # type: ignore[union-attr]
        self.assertEqual(svc.listener.metadata, {"l": "3", "x": "4"})  # type: ignore[union-attr]

    def test_scopesPerPortRangeService(self) -> None:
        """
        Every service of a port range gets its own copy of the metadata.
        """
        svcs = services("relay://:1-2?x=1")
        svcs[0].handler.metadata["y"] = "2"  # type: ignore[union-attr]
        self.assertEqual(svcs[1].handler.metadata, {"x": "1"})  # type: ignore[union-attr]

    def test_bypass(self) -> None:
        """
        C{bypass=~a,b}: a whitelist bypass named in the service, consumed
        from the handler's metadata.
        """
        cfg = buildConfigFromCommandLine(["relay://:1?bypass=~a,b"], [])
        self.assertEqual(len(cfg.bypasses), 1)
        bypass = cfg.bypasses[0]
        self.assertTrue(bypass.whitelist)
        self.assertEqual(bypass.matchers, ["a", "b"])
        self.assertEqual(cfg.services[0].bypass, bypass.name)
        self.assertEqual(bypass.name, "bypass-0")
        self.assertNotIn("bypass", cfg.services[0].handler.metadata)  # type: ignore[union-attr]
        printed = cfg.toDict()
        self.assertEqual(printed["bypasses"], [{"name": "bypass-0", "whitelist": True, "matchers": ["a", "b"]}])

    def test_bypassBlacklist(self) -> None:
        cfg = buildConfigFromCommandLine(["relay://:1?bypass=10.0.0.0/8,,x"], [])
        self.assertFalse(cfg.bypasses[0].whitelist)
        self.assertEqual(cfg.bypasses[0].matchers, ["10.0.0.0/8", "x"])

    def test_bypassNamesCountNodesFirst(self) -> None:
        """
        -F bypasses are made first (GOST builds the chain before the
        services): the hop gets bypass-0, the service bypass-1.
        """
        cfg = buildConfigFromCommandLine(["relay://:1?bypass=s"], ["relay://h:1?bypass=n"])
        self.assertEqual(cfg.chains[0].hops[0].bypass, "bypass-0")
        self.assertEqual(cfg.services[0].bypass, "bypass-1")
        self.assertEqual([b.matchers for b in cfg.bypasses], [["n"], ["s"]])

    def test_retries(self) -> None:
        svc = one("relay://:1?retries=2")
        self.assertEqual(svc.handler.retries, 2)  # type: ignore[union-attr]
        self.assertNotIn("retries", svc.handler.metadata)  # type: ignore[union-attr]

    def test_retriesZeroNotConsumed(self) -> None:
        svc = one("relay://:1?retries=0")
        self.assertEqual(svc.handler.retries, 0)  # type: ignore[union-attr]
        self.assertEqual(svc.handler.metadata, {"retries": "0"})  # type: ignore[union-attr]

    def test_selectorConsumed(self) -> None:
        svc = one("tcp://:2222/a:1,b:2?strategy=fifo&maxFails=3&failTimeout=1m&x=1")
        selector = svc.forwarder.selector  # type: ignore[union-attr]
        assert selector is not None
        self.assertEqual((selector.strategy, selector.maxFails, selector.failTimeout), ("fifo", 3, 60.0))
        for md in (svc.metadata, svc.handler.metadata, svc.listener.metadata):  # type: ignore[union-attr]
            self.assertEqual(md, {"x": "1"})

    def test_selectorAliasesAndDefaults(self) -> None:
        """
        C{max_fails}, C{fail_timeout}; a missing strategy is round, missing
        maxFails 1, missing failTimeout 30s.
        """
        svc = one("tcp://:2222/a:1?max_fails=4")
        s = svc.forwarder.selector  # type: ignore[union-attr]
        self.assertEqual((s.strategy, s.maxFails, s.failTimeout), ("round", 4, 30.0))  # type: ignore[union-attr]
        svc = one("tcp://:2222/a:1?fail_timeout=5s")
        s = svc.forwarder.selector  # type: ignore[union-attr]
        self.assertEqual((s.strategy, s.maxFails, s.failTimeout), ("round", 1, 5.0))  # type: ignore[union-attr]
        self.assertEqual(svc.handler.metadata, {})  # type: ignore[union-attr]

    def test_listenerTLSFiles(self) -> None:
        svc = one("relay+tls://:443?certFile=c.pem&keyFile=k.pem&caFile=ca.pem&x=1")
        tls = svc.listener.tls  # type: ignore[union-attr]
        assert tls is not None
        self.assertEqual((tls.certFile, tls.keyFile, tls.caFile), ("c.pem", "k.pem", "ca.pem"))
        self.assertEqual(svc.listener.metadata, {"x": "1"})  # type: ignore[union-attr]
        self.assertEqual(svc.handler.metadata, {"x": "1"})  # type: ignore[union-attr]
        # Without a certificate there is no listener TLS section.
        self.assertIsNone(one("relay+tls://:443?keyFile=k.pem").listener.tls)  # type: ignore[union-attr]

    def test_interfaceGoesToService(self) -> None:
        svc = one("relay://:1?interface=eth0&so_mark=7")
        self.assertEqual(svc.metadata, {"interface": "eth0", "so_mark": 7})
        self.assertEqual(svc.handler.metadata, {})  # type: ignore[union-attr]

    def test_dnsList(self) -> None:
        svc = one("dns://:53?dns=1.1.1.1,8.8.8.8")
        self.assertEqual(svc.handler.metadata["dns"], ["1.1.1.1", "8.8.8.8"])  # type: ignore[union-attr]


class ChainTests(SynchronousTestCase):
    """
    C{-F}: one hop each, nodes, scopes, TLS, and where services put the chain.
    """

    def test_chainOnHandler(self) -> None:
        cfg = buildConfigFromCommandLine([":8080", "relay://:1", "tcp://:2/:3"], ["relay://h:1"])
        self.assertEqual([c.name for c in cfg.chains], ["chain-0"])
        for svc in cfg.services:
            self.assertEqual(svc.handler.chain, "chain-0")  # type: ignore[union-attr]
            self.assertEqual(svc.listener.chain, "")  # type: ignore[union-attr]

    def test_chainOnListenerForRemote(self) -> None:
        cfg = buildConfigFromCommandLine(["rtcp://:1/:2", "rudp://:3/:4"], ["relay://h:1"])
        for svc in cfg.services:
            self.assertEqual(svc.listener.chain, "chain-0")  # type: ignore[union-attr]
            self.assertEqual(svc.handler.chain, "")  # type: ignore[union-attr]

    def test_noChainWithoutNodes(self) -> None:
        cfg = buildConfigFromCommandLine([":8080"], [])
        self.assertEqual(cfg.chains, [])
        self.assertEqual(cfg.services[0].handler.chain, "")  # type: ignore[union-attr]

    def test_hopPerNode(self) -> None:
        cfg = buildConfigFromCommandLine([":1"], ["relay://a:1", "relay+tls://b:2", ":3"])
        hops = cfg.chains[0].hops
        self.assertEqual([h.name for h in hops], ["hop-0", "hop-1", "hop-2"])
        self.assertEqual([h.nodes[0].name for h in hops], ["node-0"] * 3)
        self.assertEqual(
            [(h.nodes[0].connector.type, h.nodes[0].dialer.type) for h in hops],  # type: ignore[union-attr]
            [("relay", "tcp"), ("relay", "tls"), ("http", "tcp")],
        )

    def test_unknownWords(self) -> None:
        """
        An unknown connector or dialer is refused, naming it and the
        nearest known names (GOST: http, tcp); one word may be either
        (C{tls://} is http over tls); no scheme at all is http.
        """
        cfg = Config()
        e = self.assertRaises(ConfigError, parseNodeURL, cfg, "foo+bar://h:1", 3)
        self.assertIn("connector 'foo'", str(e))
        e = self.assertRaises(ConfigError, parseNodeURL, cfg, "relya://h:1", 3)
        self.assertIn("'relya'", str(e))
        self.assertIn("did you mean relay://", str(e))
        e = self.assertRaises(ConfigError, parseNodeURL, cfg, "relay+wsss://h:1", 3)
        self.assertIn("dialer 'wsss'", str(e))
        hop = parseNodeURL(cfg, "tls://h:1", 3)
        self.assertEqual(hop.name, "hop-3")
        node = hop.nodes[0]
        self.assertEqual((node.connector.type, node.dialer.type), ("http", "tls"))  # type: ignore[union-attr]
        hop = parseNodeURL(cfg, "h:1", 3)
        self.assertEqual((hop.nodes[0].connector.type, hop.nodes[0].dialer.type), ("http", "tcp"))  # type: ignore[union-attr]
        hop = parseNodeURL(cfg, "relay+kcp://h:1", 0)
        self.assertEqual((hop.nodes[0].connector.type, hop.nodes[0].dialer.type), ("relay", "kcp"))  # type: ignore[union-attr]

    def test_severalNodes(self) -> None:
        """
        C{-F relay://a:1,b:2}: one hop, two nodes with identical settings;
        the server name is Go's Hostname() of the whole host (spec 10.3 (h)
        note).
        """
        cfg = buildConfigFromCommandLine([":1"], ["relay://u:p@a:1,b:2?x=1"])
        self.assertEqual(len(cfg.chains[0].hops), 1)
        nodes = cfg.chains[0].hops[0].nodes
        self.assertEqual([(n.name, n.addr) for n in nodes], [("node-0", "a:1"), ("node-1", "b:2")])
        for n in nodes:
            self.assertEqual(n.dialer.tls.serverName, "a:1,b")  # type: ignore[union-attr]
            self.assertEqual((n.connector.auth.username, n.connector.auth.password), ("u", "p"))  # type: ignore[union-attr]
            self.assertEqual(n.metadata, {"x": "1"})
            self.assertEqual(n.source, "relay://u:p@a:1,b:2?x=1")
        # Separate objects.
        nodes[0].connector.metadata["y"] = "2"  # type: ignore[union-attr]
        self.assertEqual(nodes[1].connector.metadata, {"x": "1"})  # type: ignore[union-attr]

    def test_serverNameFromHost(self) -> None:
        """
        The dialer TLS server name is the URL host without its port, for
        every dialer, tcp included; an IPv6 literal loses its brackets.
        """
        for url, name in (
            ("relay://server.example:8420", "server.example"),
            ("relay+tls://b.example:8443", "b.example"),
            ("relay://[::1]:8420", "::1"),
            ("relay://10.0.0.1:1", "10.0.0.1"),
        ):
            hop = parseNodeURL(Config(), url, 0)
            self.assertEqual(hop.nodes[0].dialer.tls.serverName, name, url)  # type: ignore[union-attr]
        self.assertEqual(parseNodeURL(Config(), "relay://[::1]:8420", 0).nodes[0].addr, "[::1]:8420")

    def test_noServerNameNoTLS(self) -> None:
        """
        An empty host (C{:8420}) gives no server name, so no TLS section.
        """
        hop = parseNodeURL(Config(), "relay://:8420", 0)
        self.assertIsNone(hop.nodes[0].dialer.tls)  # type: ignore[union-attr]

    def test_tlsKeys(self) -> None:
        hop = parseNodeURL(Config(), "relay+tls://h:1?serverName=x.example&secure=true&caFile=ca.pem&y=1", 0)
        node = hop.nodes[0]
        tls = node.dialer.tls  # type: ignore[union-attr]
        self.assertEqual((tls.serverName, tls.secure, tls.caFile), ("x.example", True, "ca.pem"))  # type: ignore[union-attr]
        for md in (node.metadata, node.connector.metadata, node.dialer.metadata):  # type: ignore[union-attr]
            self.assertEqual(md, {"y": "1"})

    def test_userinfoAndAuthParam(self) -> None:
        hop = parseNodeURL(Config(), "relay://us%40er:p%3Ass@h:1", 0)
        auth = hop.nodes[0].connector.auth  # type: ignore[union-attr]
        self.assertEqual((auth.username, auth.password), ("us@er", "p:ss"))  # type: ignore[union-attr]
        hop = parseNodeURL(Config(), "relay://h:1?auth=dXNlcjpwYXNz", 0)
        node = hop.nodes[0]
        auth = node.connector.auth  # type: ignore[union-attr]
        self.assertEqual((auth.username, auth.password), ("user", "pass"))  # type: ignore[union-attr]
        self.assertNotIn("auth", node.connector.metadata)  # type: ignore[union-attr]
        self.assertIsNone(node.dialer.auth)  # type: ignore[union-attr]

    def test_scopes(self) -> None:
        """
        C{hop.}, C{node.}, C{connector.}, C{dialer.} keys go to their scope
        only; the others to all four.
        """
        hop = parseNodeURL(Config(), "relay://h:1?hop.a=1&node.b=2&connector.c=3&dialer.d=4&e=5", 0)
        node = hop.nodes[0]
        self.assertEqual(hop.metadata, {"a": "1", "e": "5"})
        self.assertEqual(node.metadata, {"b": "2", "e": "5"})
        self.assertEqual(node.connector.metadata, {"c": "3", "e": "5"})  # type: ignore[union-attr]
        self.assertEqual(node.dialer.metadata, {"d": "4", "e": "5"})  # type: ignore[union-attr]

    def test_hopSelectorAndBypass(self) -> None:
        cfg = Config()
        hop = parseNodeURL(cfg, "relay://a:1,b:2?strategy=rand&maxFails=2&failTimeout=30s&bypass=~x,y", 0)
        s = hop.selector
        assert s is not None
        self.assertEqual((s.strategy, s.maxFails, s.failTimeout), ("rand", 2, 30.0))
        self.assertEqual(hop.bypass, "bypass-0")
        self.assertTrue(cfg.bypasses[0].whitelist)
        self.assertEqual(cfg.bypasses[0].matchers, ["x", "y"])
        for md in [hop.metadata] + [n.metadata for n in hop.nodes] + [n.connector.metadata for n in hop.nodes]:  # type: ignore[union-attr]
            self.assertEqual(md, {})

    def test_interfaceGoesToHop(self) -> None:
        hop = parseNodeURL(Config(), "relay://h:1?interface=eth0", 0)
        self.assertEqual(hop.metadata, {"interface": "eth0"})
        self.assertEqual(hop.nodes[0].metadata, {})

    def test_noAddress(self) -> None:
        self.assertRaises(ConfigError, parseNodeURL, Config(), "relay://", 0)

    def test_printed(self) -> None:
        """
        The printed hop of C{-F relay://a:1,b:2} (dialer tls serverName
        'a:1,b').
        """
        printed = buildConfigFromCommandLine([":1"], ["relay://a:1,b:2"]).toDict()
        self.assertEqual(
            printed["chains"],
            [
                {
                    "name": "chain-0",
                    "hops": [
                        {
                            "name": "hop-0",
                            "nodes": [
                                {
                                    "name": f"node-{i}",
                                    "addr": addr,
                                    "connector": {"type": "relay"},
                                    "dialer": {"type": "tcp", "tls": {"serverName": "a:1,b"}},
                                }
                                for i, addr in enumerate(["a:1", "b:2"])
                            ],
                        }
                    ],
                }
            ],
        )


class DirectParserTests(SynchronousTestCase):
    """
    L{parseServiceURL} and L{expandPortRange} on their own.
    """

    def test_parseServiceURL(self) -> None:
        cfg = Config()
        svcs = parseServiceURL(cfg, "relay://:8000-8001?bind=true")
        self.assertEqual([s.addr for s in svcs], [":8000", ":8001"])
        # Names are given by buildConfigFromCommandLine, not here.
        self.assertEqual(cfg.services, [])

    def test_expandPortRange(self) -> None:
        self.assertEqual(expandPortRange(":8000-8002"), [":8000", ":8001", ":8002"])
        self.assertEqual(expandPortRange("h:3-1"), ["h:1", "h:2", "h:3"])
        self.assertEqual(expandPortRange("[::1]:1-2"), ["[::1]:1", "[::1]:2"])
        self.assertEqual(expandPortRange("h:22"), ["h:22"])
        self.assertEqual(expandPortRange("a:1,b:2"), ["a:1,b:2"])
        self.assertRaises(ConfigError, expandPortRange, ":65535-65536")

    def test_missingScheme(self) -> None:
        self.assertRaises(ConfigError, buildConfigFromCommandLine, ["   "], ["   "])


class MetadataTests(SynchronousTestCase):
    """
    Option values as GOST reads them (spec 13.1).
    """

    def test_getBool(self) -> None:
        md = Metadata(
            {"a": "true", "b": "1", "c": "T", "d": "yes", "e": True, "f": 1, "g": 0, "h": "false", "i": "TRUE", "j": 1.0, "k": " true"}
        )
        self.assertEqual(
            {k: md.getBool(k) for k in "abcdefghijk"},
            {"a": True, "b": True, "c": True, "d": False, "e": True, "f": True, "g": False, "h": False, "i": True, "j": False, "k": False},
        )
        self.assertFalse(md.getBool("missing"))
        self.assertTrue(md.getBool("missing", default=True))

    def test_getInt(self) -> None:
        md = Metadata({"a": "10", "b": True, "c": False, "d": 7, "e": "x", "f": 2.5, "g": "-3"})
        self.assertEqual([md.getInt(k) for k in "abcdefg"], [10, 1, 0, 7, 0, 0, -3])
        self.assertEqual(md.getInt("missing", default=9), 9)

    def test_getIntDecimalOnly(self) -> None:
        """
        BUG (minor): a string is read like Go's strconv.Atoi, decimal digits
        only (spec 13.1 "decimal string").  Python's int() also accepts
        "1_000" and non-ASCII digits, which GOST reads as 0.  Repro:
        Metadata({"n": "1_000"}).getInt("n") == 1000 (GOST: 0).
        """
        md = Metadata({"n": "1_000", "m": "\u0661\u0662"})
        self.assertEqual((md.getInt("n"), md.getInt("m")), (0, 0))

    def test_getDuration(self) -> None:
        md = Metadata(
            {"a": "10s", "b": 10, "c": "10", "d": "1m30s", "e": "500ms", "f": "bad", "g": True, "h": 1.5, "i": "0s", "j": "1h"}
        )
        self.assertEqual(
            [md.getDuration(k) for k in "abcdefghij"],
            [10.0, 10.0, 10.0, 90.0, 0.5, 0.0, 0.0, 0.0, 0.0, 3600.0],
        )
        self.assertEqual(md.getDuration("missing", default=3.0), 3.0)

    def test_caseInsensitive(self) -> None:
        md = Metadata({"ReadTimeout": "5s", "BIND": "true"})
        self.assertEqual(md.getDuration("readtimeout"), 5.0)
        self.assertEqual(md.getDuration("READTIMEOUT"), 5.0)
        self.assertTrue(md.getBool("bind"))
        self.assertIn("readTimeout", md)
        self.assertEqual(md["readtimeout"], "5s")
        # The original keys are kept for printing.
        self.assertEqual(list(md), ["ReadTimeout", "BIND"])

    def test_firstAliasPresent(self) -> None:
        md = Metadata({"udp.bufferSize": "2", "udpBufferSize": "1"})
        self.assertEqual(md.getInt("udpBufferSize", "udp.bufferSize"), 1)
        self.assertEqual(md.getInt("nope", "udp.bufferSize"), 2)
        # Present but unusable: the first present alias wins even so.
        md = Metadata({"a": "x", "b": "5"})
        self.assertEqual(md.getInt("a", "b"), 0)

    def test_getStrings(self) -> None:
        md = Metadata({"a": "x,y,,z", "b": ["p", 1]})
        self.assertEqual(md.getStrings("a"), ["x", "y", "z"])
        self.assertEqual(md.getStrings("b"), ["p", "1"])
        self.assertEqual(md.getStrings("c"), [])

    def test_getString(self) -> None:
        md = Metadata({"a": True, "b": 3, "c": None})
        self.assertEqual((md.getString("a"), md.getString("b"), md.getString("c", default="d")), ("true", "3", "d"))


class GoDurationTests(SynchronousTestCase):
    def test_parse(self) -> None:
        for text, seconds in (
            ("10s", 10.0),
            ("1m30s", 90.0),
            ("500ms", 0.5),
            ("1h", 3600.0),
            ("1.5h", 5400.0),
            ("2h45m", 9900.0),
            ("-1.5s", -1.5),
            (".5s", 0.5),
            ("0", 0.0),
            ("1us", 1e-6),
            ("1µs", 1e-6),
        ):
            self.assertAlmostEqual(parseGoDuration(text), seconds, msg=text)  # type: ignore[arg-type]
        for bad in ("", "5", "1d", "s", "1.5", "abc", "1s2"):
            self.assertIsNone(parseGoDuration(bad), bad)

    def test_format(self) -> None:
        for seconds, text in (
            (30, "30s"),
            (90, "1m30s"),
            (0, "0s"),
            (60, "1m0s"),
            (3600, "1h0m0s"),
            (3661, "1h1m1s"),
            (0.5, "500ms"),
            (1.5, "1.5s"),
            (30.0, "30s"),
        ):
            self.assertEqual(formatGoDuration(seconds), text)

    def test_formatLikeGo(self) -> None:
        """
        BUG: formatGoDuration is not Go's time.Duration.String for
        fractional values: 1.5 ms prints "1500µs" (Go: "1.5ms"), and the
        seconds use %g, so more than 6 significant digits are lost:
        59.123456789 s prints "59.1235s" (Go: "59.123456789s").  This shows
        in -O yaml: C{-F "relay://a:1?failTimeout=59.123456789s"} prints
        failTimeout: 59.1235s, a different duration.
        """
        self.assertEqual(formatGoDuration(0.0015), "1.5ms")
        self.assertEqual(formatGoDuration(59.123456789), "59.123456789s")
        self.assertEqual(formatGoDuration(3600 + 0.1234567), "1h0m0.1234567s")

    def test_roundTrip(self) -> None:
        """
        Printing a parsed Go duration gives the same duration back.
        """
        for text in ("30s", "1m30s", "500ms", "2h0m0s", "1.25s"):
            self.assertAlmostEqual(parseGoDuration(formatGoDuration(parseGoDuration(text))), parseGoDuration(text))  # type: ignore[arg-type]
