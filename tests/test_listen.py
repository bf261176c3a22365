"""
The Twisted face of the command line, in process: the one parse rule for
C{-L}/C{--listen} values, per-service flags after a description, typos
refused, option values checked, C{-O yaml} → C{-C} round trips, help text,
one-line errors (issue 16; issue 14 items 5 and 6).
"""

from __future__ import annotations

import io
import os
import re
import shlex
import sys
from contextlib import redirect_stderr
from typing import Any

import yaml
from twisted.internet.address import IPv4Address, IPv6Address, UNIXAddress
from twisted.internet.testing import MemoryReactorClock
from twisted.python import usage
from twisted.trial.unittest import SynchronousTestCase

from gostrelay import registry
from gostrelay.build import RefusedConfiguration, buildServices, isOpenProxy
from gostrelay.config.files import dumpConfig, loadSource
from gostrelay.config.listen import DESCRIPTION, URL, ListenSpec, classify, firstField
from gostrelay.config.model import AuthConfig, ConfigError, HandlerConfig, ServiceConfig
from gostrelay.tap import SYNOPSIS, Options, makeService

SEED_CASES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "seed-cases.yaml")


def options(*args: str) -> Options:
    o = Options()
    o.parseOptions(list(args))
    return o


def config(*args: str) -> Any:
    return options(*args).loadConfig()


class ParseRuleTests(SynchronousTestCase):
    """
    The five cases of the parse rule, and the GOST URL before them.
    """

    def test_table(self) -> None:
        """
        Each value is what the rule says it is.
        """
        table = [
            # A value with :// is a GOST URL.
            ("relay://:8420", URL),
            ("tls://:8443", URL),
            ("relay+ws://u:p@127.0.0.1:8420/:53?bind=true", URL),
            # 1: P empty, or an IPv6 literal: a GOST address.
            (":8080", URL),
            ("[::1]:8080", URL),
            (":8000-8003/10.0.0.1:80", URL),
            # 2: a server endpoint prefix Twisted knows.
            ("tcp:8420", DESCRIPTION),
            ("tcp:8420:interface=127.0.0.1", DESCRIPTION),
            ("tcp6:8420:interface=\\:\\:1", DESCRIPTION),
            ("unix:/run/relay.sock", DESCRIPTION),
            ("ssl:8443:privateKey=key.pem:certKey=cert.pem", DESCRIPTION),
            ("systemd:domain=INET:index=0", DESCRIPTION),
            ("haproxy:tcp:8080", DESCRIPTION),
            ("stdio:", DESCRIPTION),
            # Twisted's TLS endpoint, not GOST's auto handler over tls.
            ("tls:8443", DESCRIPTION),
            ("ws:tcp\\:8080", DESCRIPTION),
            ("wss:tcp\\:8443:path=/relay", DESCRIPTION),
            # 4: GOST's [user:pass@]host:port[-port][/targets][?query].
            ("127.0.0.1:8080", URL),
            ("localhost:8080", URL),
            ("proxy.example:8080", URL),
            ("bob:pw@:8081", URL),
            ("relay:pw@127.0.0.1:8081", URL),
            ("127.0.0.1:8000-8001/10.0.0.1:80?strategy=fifo", URL),
        ]
        for value, expected in table:
            self.assertEqual(classify(value), expected, value)

    def test_typeNameRefused(self) -> None:
        """
        3: a GOST type name before a colon is refused, suggesting the URL.
        """
        for value, suggestion in (
            ("relay:8420", "relay://:8420"),
            ("socks5:1080", "socks5://:1080"),
            ("http:127.0.0.1:8080", "http://127.0.0.1:8080"),
            ("kcp2:8388", None),
        ):
            e = self.assertRaises(ConfigError, classify, value)
            self.assertNotIn("\n", str(e))
            self.assertIn(value, str(e))
            if suggestion:
                self.assertIn(f"did you mean {suggestion}?", str(e))

    def test_nearestPrefixes(self) -> None:
        """
        5: anything else is refused, naming the nearest prefixes.
        """
        e = self.assertRaises(ConfigError, classify, "tpc:8420")
        self.assertIn("tcp:8420", str(e))
        e = self.assertRaises(ConfigError, classify, "unx:/tmp/x.sock")
        self.assertIn("unix:/tmp/x.sock", str(e))
        e = self.assertRaises(ConfigError, classify, "qqqqq")
        self.assertIn("tcp", str(e))
        e = self.assertRaises(ConfigError, classify, "myhost:8080")
        self.assertIn("auto://myhost:8080", str(e))

    def test_escapedColon(self) -> None:
        """
        P ends at the first colon that is not escaped.
        """
        self.assertEqual(firstField("ws:tcp\\:80:path=/x"), ("ws", "tcp\\:80:path=/x"))
        self.assertEqual(firstField("a\\:b:c"), ("a\\:b", "c"))
        self.assertEqual(firstField("abc"), ("abc", ""))

    def test_seedCasesStillGOST(self) -> None:
        """
        Every -L value of every seed command line is still a GOST URL, and
        the whole command line still parses.
        """
        with open(SEED_CASES, encoding="utf-8") as f:
            cases = yaml.safe_load(f)["cases"]
        self.assertGreaterEqual(len(cases), 12)
        for case in cases:
            args = shlex.split(case["cli"])[1:]
            for flag, value in zip(args, args[1:]):
                if flag == "-L":
                    self.assertEqual(classify(value), URL, case["cli"])
            o = options(*args)
            self.assertFalse([s for s in o["listen"] if isinstance(s, ListenSpec)], case["cli"])
            o.loadConfig()


class PerServiceFlagsTests(SynchronousTestCase):
    def test_equivalentToURL(self) -> None:
        """
        C{--listen tcp:8420 --user u:p --target :53 --option bind=true} is
        C{-L relay://u:p@:8420/:53?bind=true} on another listener.
        """
        described = config("--listen", "tcp:8420", "--user", "u:p", "--target", ":53", "--option", "bind=true")
        url = config("-L", "relay://u:p@:8420/:53?bind=true")
        d, u = described.toDict(), url.toDict()
        self.assertEqual(d["services"][0].pop("addr"), "tcp:8420")
        self.assertEqual(u["services"][0].pop("addr"), ":8420")
        self.assertEqual(d["services"][0]["listener"].pop("type"), "endpoint")
        self.assertEqual(u["services"][0]["listener"].pop("type"), "tcp")
        self.assertEqual(d, u)

    def test_flagsApplyToTheirService(self) -> None:
        """
        Flags after a description belong to it only.
        """
        cfg = config(
            "--listen", "tcp:8420", "--handler", "socks5",
            "--listen", "unix:/tmp/r.sock", "--user", "a:1",
            "-L", "relay://:9000",
        )
        a, b, c = cfg.services
        self.assertEqual((a.handler.type, a.handler.auth), ("socks5", None))
        self.assertEqual((b.handler.type, b.handler.auth), ("relay", AuthConfig("a", "1")))
        self.assertEqual((c.addr, c.listener.type, c.handler.auth), (":9000", "tcp", None))
        self.assertEqual([s.name for s in cfg.services], ["service-0", "service-1", "service-2"])

    def test_severalUsersAndFile(self) -> None:
        """
        Several C{--user}s or a C{--users} file become a named auther.
        """
        cfg = config("--listen", "tcp:8420", "--user", "a:1", "--user", "b:2", "--users", "/etc/relay-users")
        svc = cfg.services[0]
        self.assertEqual(svc.handler.auther, "auther-0")
        self.assertIsNone(svc.handler.auth)
        auther = cfg.auther("auther-0")
        self.assertEqual([(a.username, a.password) for a in auther.auths], [("a", "1"), ("b", "2")])
        self.assertEqual(auther.file.path, "/etc/relay-users")

    def test_usageErrors(self) -> None:
        """
        Per-service flags before any --listen, after a GOST URL, or
        malformed, are usage errors naming the flag.
        """
        for args, words in (
            (["--user", "u:p"], ["--user", "none"]),
            (["-L", "relay://:1", "--target", ":53"], ["--target", "relay://:1", "/host:port"]),
            (["-L", ":8080", "--option", "a=b"], ["--option", "?key=value"]),
            (["--listen", "tcp:1", "--option", "novalue"], ["KEY=VALUE"]),
            (["--listen", "tcp:1", "--user", "nopass"], ["NAME:PASS"]),
            (["--listen", "tcp:1", "--handler", "a", "--handler", "b"], ["twice"]),
            (["--listen", "tcp:1", "--target", "a:1,b:2"], ["repeat --target"]),
        ):
            e = self.assertRaises(usage.UsageError, options, *args)
            for word in words:
                self.assertIn(word, str(e), args)

    def test_datagramHandlerRefused(self) -> None:
        """
        A datagram handler cannot serve a stream description: refused, one
        line, pointing at the udp listener.
        """
        cfg = config("--listen", "tcp:0", "--handler", "udp", "--target", ":53")
        e = self.assertRaises(RefusedConfiguration, buildServices, MemoryReactorClock(), cfg)
        self.assertEqual(len(e.problems), 1, e.problems)
        self.assertIn("udp://", e.problems[0])

    def test_unknownHandler(self) -> None:
        """
        A --handler no one registers is refused with the nearest names.
        """
        e = self.assertRaises(ConfigError, config, "--listen", "tcp:1", "--handler", "rely")
        self.assertIn("did you mean relay", str(e))

    def test_badValueReportedWhenBuilt(self) -> None:
        """
        A value the parse rule refuses is reported, one line, when the
        configuration is built (exit 1), not as a usage error.
        """
        o = options("-L", "relay:8420")
        e = self.assertRaises(ConfigError, o.loadConfig)
        self.assertIn("relay://:8420", str(e))

    def test_workersRefused(self) -> None:
        """
        --workers with a description: one line, exit 1.
        """
        o = options("--listen", "tcp:0:interface=127.0.0.1", "--workers", "2")
        err = io.StringIO()
        with redirect_stderr(err):
            e = self.assertRaises(SystemExit, makeService, o, MemoryReactorClock())
        self.assertEqual(e.code, 1)
        lines = err.getvalue().splitlines()
        self.assertEqual(len(lines), 1, lines)
        self.assertIn("--workers", lines[0])


class RoundTripTests(SynchronousTestCase):
    def roundTrip(self, *args: str) -> None:
        cfg = config(*args)
        printed = dumpConfig(cfg, "yaml")
        path = self.mktemp() + ".yaml"
        with open(path, "w", encoding="utf-8") as f:
            f.write(printed)
        again = loadSource(path)
        self.assertEqual(dumpConfig(again, "yaml"), printed)
        # And -C with that file builds services (with the endpoint listener).
        top = buildServices(MemoryReactorClock(), again)
        self.assertEqual(len(list(top)), len(cfg.services))

    def test_descriptions(self) -> None:
        """
        C{-O yaml} of description services reads back (C{-C}) unchanged
        and builds.
        """
        self.roundTrip(
            "--listen", "tcp:8420:interface=127.0.0.1", "--user", "u:p", "--target", "127.0.0.1:53",
            "--option", "bind=true", "--option", "handler.readTimeout=5s",
            "--listen", "unix:/tmp/gostrelay-test.sock", "--handler", "socks5", "--user", "a:1", "--user", "b:2",
            "-L", "relay://127.0.0.1:9000",
        )
        cfg = config("--listen", "tcp:8420")
        self.assertEqual(cfg.toDict()["services"][0]["listener"], {"type": "endpoint"})


class TyposAndValuesTests(SynchronousTestCase):
    def test_unknownOptionWarned(self) -> None:
        """
        An option no part of the service reads: one warning naming the
        nearest option of that type.
        """
        cfg = config("-L", "relay://:8420?bnid=true&bind=true&handler.readTimeot=5s&listener.backlog=5")
        self.assertEqual(len(cfg.warnings), 2, cfg.warnings)
        self.assertIn("'bnid'", cfg.warnings[0])
        self.assertIn("did you mean bind?", cfg.warnings[0])
        self.assertIn("did you mean readTimeout?", cfg.warnings[1])
        cfg = config("-L", ":8080", "-F", "relay://h:1?nodelya=true&nodelay=true&weight=2")
        self.assertEqual(len(cfg.warnings), 1, cfg.warnings)
        self.assertIn("did you mean nodelay?", cfg.warnings[0])
        cfg = config("--listen", "tcp:1", "--option", "bnid=true")
        self.assertIn("did you mean bind?", cfg.warnings[0])

    def test_listenerOptionOnADescription(self) -> None:
        """
        A GOST listener's option given to a description service is ignored
        (the endpoint's own arguments say it): the warning says where it
        belongs rather than guessing a near name (path: "did you mean
        auth?").  On a GOST URL the same options are read, no warning.
        """
        cfg = config("--listen", "ws:tcp\\:1", "--option", "path=/x", "--option", "listener.backlog=5", "--option", "bind=true")
        self.assertEqual(len(cfg.warnings), 2, cfg.warnings)
        self.assertIn("option 'path' is read by GOST's listeners", cfg.warnings[0])
        self.assertIn("'listener.backlog'", cfg.warnings[1])
        for warning in cfg.warnings:
            self.assertIn("argument of its endpoint", warning)
            self.assertNotIn("did you mean", warning)
        self.assertEqual(config("-L", "relay+ws://:1?path=/x&backlog=5&bind=true").warnings, [])

    def test_knownOptionsQuiet(self) -> None:
        """
        Options that some part reads, or that the command line consumes, or
        that GOST has and we refuse by name, are not warned about.
        """
        cfg = config(
            "-L", "relay://:8420?bind=true&readTimeout=5s&dialTimeout=3s&retries=2&bypass=10.0.0.0/8"
            "&maxConns=10&interface=eth0&certFile=c.pem",
            "-L", "socks5://:1080?udp=true&ttl=30s",
            "-F", "relay+wss://h:1?path=/ws&nodelay=true&secure=true&serverName=x&strategy=fifo",
        )
        self.assertEqual(cfg.warnings, [])

    def test_badValuesRefused(self) -> None:
        """
        A boolean, number or duration option whose value is none: exit 1
        naming option and value (GOST would read false or 0).
        """
        for args, words in (
            (["-L", "relay://127.0.0.1:0?bind=yes"], ["bind", "'yes'", "true or false"]),
            (["-L", "relay://127.0.0.1:0?readTimeout=soon"], ["readTimeout", "'soon'", "duration"]),
            (["-L", "relay://127.0.0.1:0?listener.backlog=many"], ["backlog", "'many'", "whole number"]),
            (["-L", ":0", "-F", "relay://127.0.0.1:1?nodelay=maybe"], ["nodelay", "'maybe'"]),
            (["--listen", "tcp:0", "--option", "maxConns=ten"], ["maxConns", "'ten'"]),
        ):
            cfg = config(*args)
            e = self.assertRaises(RefusedConfiguration, buildServices, MemoryReactorClock(), cfg)
            text = "\n".join(e.problems)
            for word in words:
                self.assertIn(word, text, args)
        # Go's boolean spellings are all fine.
        for value in ("1", "t", "T", "TRUE", "true", "True", "0", "f", "F", "FALSE", "false", "False"):
            buildServices(MemoryReactorClock(), config("-L", f"relay://127.0.0.1:0?bind={value}&readTimeout=10"))


class ThirdPartyTypeTests(SynchronousTestCase):
    """
    A type registered at run time (as a plugin would) is usable by name
    from -L and -F, and -O prints its name.
    """

    def setUp(self) -> None:
        registry._index()
        saved = dict(registry._cache or {})

        def restore() -> None:
            registry._cache = saved

        self.addCleanup(restore)
        registry.register(registry.TypePlugin("handler", "echo", "twisted.internet.protocol.Factory", options={"greeting": "string"}))
        registry.register(registry.TypePlugin("dialer", "mycarrier", "gostrelay.transports.tcp.TCPDialer", options={}))
        registry.register(
            registry.TypePlugin("listener", "mycarrier", "gostrelay.transports.tcp.TCPListener", options={"flavour": "string"})
        )

    def test_byName(self) -> None:
        cfg = config("-L", "echo://:9999?greeting=hi", "-F", "relay+mycarrier://h:1")
        svc = cfg.services[0]
        self.assertEqual((svc.handler.type, svc.listener.type), ("echo", "tcp"))
        self.assertEqual(cfg.chains[0].hops[0].nodes[0].dialer.type, "mycarrier")
        self.assertEqual(cfg.warnings, [])
        self.assertIn("type: echo", dumpConfig(cfg, "yaml"))
        # A plugin's listener, under a handler and alone (auto over it).
        cfg = config("-L", "relay+mycarrier://:8420?flavour=x", "-L", "mycarrier://:8421?flavor=x")
        self.assertEqual([(s.handler.type, s.listener.type) for s in cfg.services], [("relay", "mycarrier"), ("auto", "mycarrier")])
        self.assertIn("type: mycarrier", dumpConfig(cfg, "yaml"))
        self.assertEqual(len(cfg.warnings), 1, cfg.warnings)
        self.assertIn("did you mean flavour?", cfg.warnings[0])
        cfg = config("--listen", "tcp:1", "--handler", "echo", "--option", "greting=x")
        self.assertEqual(cfg.services[0].handler.type, "echo")
        self.assertIn("did you mean greeting?", cfg.warnings[0])


class HelpTests(SynchronousTestCase):
    def test_oneSynopsisBothFaces(self) -> None:
        """
        --help and -h print one synopsis (also under twistd), the flags, and
        examples of both faces one per line.
        """
        from twisted.scripts.twistd import ServerOptions

        for args in (["--help"], ["-h"]):
            out = io.StringIO()
            saved = sys.stdout
            sys.stdout = out
            try:
                e = self.assertRaises(SystemExit, options, *args)
            finally:
                sys.stdout = saved
            self.assertEqual(e.code, 0)
            text = out.getvalue()
            self.assertTrue(text.startswith(SYNOPSIS + "\n"), text[:200])
            self.assertEqual(text.count("Usage:"), 1)
            for flag in ("--listen", "--handler", "--user", "--users", "--target", "--option", "-F", "-C"):
                self.assertIn(flag, text)
            examples = [line for line in text.splitlines() if re.search(r"^\s+\S.*:\s+(gostrelay|twistd) ", line)]
            self.assertTrue(any("-L relay://" in line for line in examples), examples)
            self.assertTrue(any("--listen tcp:8420" in line for line in examples), examples)
            self.assertTrue(any("--listen ssl:" in line for line in examples), examples)
            self.assertTrue(any("--listen unix:" in line for line in examples), examples)
        twistdOptions = ServerOptions()
        sub = Options()
        sub.parent = twistdOptions
        self.assertEqual(sub.getSynopsis(), SYNOPSIS)


class OpenProxyTests(SynchronousTestCase):
    def service(self, handler: str = "relay", **kw: Any) -> ServiceConfig:
        return ServiceConfig(name="s", addr=":1", handler=HandlerConfig(type=handler, **kw))

    def test_openWhenPublicWithoutUsers(self) -> None:
        public = IPv4Address("TCP", "0.0.0.0", 8420)
        self.assertTrue(isOpenProxy(self.service(), public))
        self.assertTrue(isOpenProxy(self.service("auto"), IPv6Address("TCP", "::", 8420)))
        self.assertTrue(isOpenProxy(self.service("socks5"), IPv4Address("TCP", "192.0.2.1", 1)))
        self.assertFalse(isOpenProxy(self.service(), IPv4Address("TCP", "127.0.0.1", 8420)))
        self.assertFalse(isOpenProxy(self.service(), IPv6Address("TCP", "::1", 8420)))
        self.assertFalse(isOpenProxy(self.service(), UNIXAddress("/tmp/x.sock")))
        self.assertFalse(isOpenProxy(self.service(auth=AuthConfig("u", "p")), public))
        self.assertFalse(isOpenProxy(self.service(auther="users"), public))
        self.assertFalse(isOpenProxy(self.service("tcp"), public))

    def test_warnedOnce(self) -> None:
        """
        A service found open logs one warning line naming it.
        """
        from twisted.logger import globalLogPublisher

        events: list[dict[str, Any]] = []
        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)
        reactor = MemoryReactorClock()
        for args, warned in ((["--listen", "tcp:8420"], True), (["--listen", "tcp:8420", "--user", "u:p"], False)):
            del events[:]
            top = buildServices(reactor, config(*args))
            top.privilegedStartService()
            from twisted.logger import formatEvent

            warnings = [formatEvent(e) for e in events if "open relay" in formatEvent(e)]
            self.assertEqual(len(warnings), 1 if warned else 0, warnings)
            if warned:
                self.assertIn("tcp:8420", warnings[0])
                self.assertIn("0.0.0.0:8420", warnings[0])


class OneLineErrorTests(SynchronousTestCase):
    def test_yamlError(self) -> None:
        """
        A YAML error is one line: file:line:column: problem.
        """
        path = self.mktemp()
        with open(path, "w") as f:
            f.write("services:\n- name: a\n  addr: :1\n   handler: x\n")
        e = self.assertRaises(ConfigError, loadSource, path)
        self.assertNotIn("\n", str(e))
        self.assertRegex(str(e), rf"^{re.escape(path)}:4:11: cannot parse YAML: mapping values are not allowed here")
        with open(path + ".json", "w") as f:
            f.write('{"services": }')
        e = self.assertRaises(ConfigError, loadSource, path + ".json")
        self.assertRegex(str(e), r":1:14: cannot parse JSON: Expecting value$")

    def test_descriptionErrors(self) -> None:
        """
        Bad descriptions and unreadable keys: one line naming the problem.
        """
        junk = os.path.abspath(self.mktemp())
        with open(junk, "w") as f:
            f.write("not a key\n")
        for description, words in (
            (f"ssl:0:privateKey={junk}", ["cannot load the TLS key or certificate", f"privateKey={junk}", "not a PEM"]),
            ("tcp:0:bogus=1", ["unknown argument 'bogus'"]),
            ("tcp:http", ["tcp:http"]),
            ("ssl:0:privateKey=/nonexistent/key.pem", ["cannot read", "/nonexistent/key.pem"]),
            ("tls:8443", ["'8443' is not a directory", "port=", "relay+tls://:8443"]),
        ):
            cfg = config("--listen", description)
            e = self.assertRaises(RefusedConfiguration, buildServices, MemoryReactorClock(), cfg)
            self.assertEqual(len(e.problems), 1, e.problems)
            self.assertNotIn("\n", e.problems[0])
            for word in words:
                self.assertIn(word, e.problems[0])

    def test_portInUse(self) -> None:
        """
        A port in use: one line naming the service, the address and that
        it is in use.
        """
        import errno

        from twisted.internet.error import CannotListenError

        from gostrelay.build import CannotStart, GostService

        class Busy:
            def listen(self, factory: Any) -> Any:
                from twisted.internet import defer

                return defer.fail(CannotListenError("127.0.0.1", 8420, OSError(errno.EADDRINUSE, "in use")))

        svc = config("--listen", "tcp:8420:interface=127.0.0.1").services[0]
        gs = GostService(svc, Busy(), object())
        e = self.assertRaises(CannotStart, gs.privilegedStartService)
        self.assertEqual(str(e), "tcp:8420:interface=127.0.0.1: cannot listen on 127.0.0.1:8420: the address is in use (another process listens there)")


class OwnPluginsTests(SynchronousTestCase):
    def test_fallbackToSourceTree(self) -> None:
        """
        When no directory of twisted.plugins' path holds our plugin files
        (an editable install), the source tree's is added and our types are
        found.
        """
        import twisted.plugins

        saved = list(twisted.plugins.__path__)
        self.addCleanup(setattr, twisted.plugins, "__path__", saved)
        twisted.plugins.__path__[:] = [
            p for p in saved if not os.path.isfile(os.path.join(p, registry.OWN_PLUGIN_FILES[0]))
        ]
        registry.forget()
        self.addCleanup(registry.forget)
        self.assertIsNotNone(registry.lookup("handler", "relay"))
        self.assertIsNotNone(registry.lookup("listener", "endpoint"))
