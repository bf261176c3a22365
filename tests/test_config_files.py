"""
Configuration files (spec-relay.md 10.1, 10.2): loading (YAML, JSON, stdin,
inline JSON), the default search, the model's round trip, merging with the
command line, refusing what we cannot run, authers with users files, and a
file-configured relay service running on the real reactor.
"""

from __future__ import annotations

import io
import json
import os
import sys

import yaml
from twisted.application.service import IService
from twisted.internet import defer, reactor
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.protocol import Protocol
from twisted.python import usage
from twisted.python.failure import Failure
from twisted.trial import unittest

from gostrelay.auth import authenticatorFor
from gostrelay.build import RefusedConfiguration, buildServices, checkConfig
from gostrelay.config import files
from gostrelay.config.files import dumpConfig, findDefault, loadSource
from gostrelay.config.model import Config, ConfigError, HandlerConfig
from gostrelay.config.url import buildConfigFromCommandLine
from gostrelay.tap import Options, rewriteGostFlags
from gostrelay.wire.relay import connectRequest
from tests.support.reactor import waitUntil
from tests.support.targets import EchoFactory

OK = b"\x01\x00\x00\x00"
UNAUTHORIZED = b"\x01\x02\x00\x00"

#: A representative GOST file: every section we model, plus keys we do not
#: model (a service's recorders, a node's "interface", top-level tls/log)
#: that must be kept and printed back.
GOST_FILE = """\
services:
- name: relay-server
  addr: ":8420"
  bypass: deny-internal
  recorders:
  - name: rec-0
    record: recorder.service.handler
  handler:
    type: relay
    auther: users
    metadata: {bind: true, readTimeout: 15s}
  listener:
    type: tcp
    metadata: {backlog: 64}
  metadata: {dialTimeout: 5}
- name: fwd
  addr: ":2222"
  handler: {type: tcp, chain: chain-0, retries: 2}
  listener: {type: tcp}
  forwarder:
    selector: {strategy: fifo, maxFails: 3, failTimeout: 1m0s}
    nodes:
    - {name: target-0, addr: "h1:22", metadata: {weight: 2}}
    - {name: target-1, addr: "h2:22", network: tcp}
chains:
- name: chain-0
  hops:
  - name: hop-0
    selector: {strategy: round, maxFails: 1, failTimeout: 10s}
    bypass: deny-internal
    nodes:
    - name: node-0
      addr: server.example:8420
      interface: eth0
      connector:
        type: relay
        auth: {username: u, password: p}
        metadata: {nodelay: false, connectTimeout: 10s}
      dialer:
        type: tcp
        tls: {serverName: server.example}
      metadata: {weight: 1}
authers:
- name: users
  auths:
  - {username: alice, password: s3cret}
  - {username: bob}
  reload: 30s
bypasses:
- name: deny-internal
  whitelist: true
  matchers: ["10.0.0.0/8", "*.internal.example", localhost]
resolvers:
- name: resolver-0
  nameservers:
  - {addr: "udp://8.8.8.8:53"}
limiters:
- name: limiter-0
  limits: ["$ 1MB 1MB"]
log: {level: debug, format: json}
tls: {certFile: cert.pem, keyFile: key.pem}
"""


class TempDirMixin:
    def tempDir(self) -> str:
        path = os.path.abspath(self.mktemp())  # type: ignore[attr-defined]
        os.makedirs(path)
        return path

    def writeFile(self, directory: str, name: str, text: str) -> str:
        path = os.path.join(directory, name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)
        return path


class LoadSourceTests(TempDirMixin, unittest.SynchronousTestCase):
    def test_yamlFile(self) -> None:
        path = self.writeFile(self.tempDir(), "gost.yaml", GOST_FILE)
        cfg = loadSource(path)
        self.assertEqual([s.name for s in cfg.services], ["relay-server", "fwd"])
        svc = cfg.services[0]
        self.assertEqual(svc.handler.type, "relay")  # type: ignore[union-attr]
        self.assertEqual(svc.handler.auther, "users")  # type: ignore[union-attr]
        self.assertEqual(svc.bypass, "deny-internal")
        self.assertEqual(cfg.services[1].handler.retries, 2)  # type: ignore[union-attr]
        selector = cfg.services[1].forwarder.selector  # type: ignore[union-attr]
        self.assertEqual((selector.strategy, selector.maxFails, selector.failTimeout), ("fifo", 3, 60.0))  # type: ignore[union-attr]
        self.assertEqual(cfg.chain("chain-0").hops[0].nodes[0].connector.auth.username, "u")  # type: ignore[union-attr]
        self.assertEqual([a.username for a in cfg.auther("users").auths], ["alice", "bob"])  # type: ignore[union-attr]
        self.assertEqual(cfg.auther("users").reload, 30.0)  # type: ignore[union-attr]
        self.assertTrue(cfg.bypasses[0].whitelist)
        self.assertEqual(cfg.bypasses[0].matchers, ["10.0.0.0/8", "*.internal.example", "localhost"])
        # Where each section came from, for messages.
        self.assertEqual(cfg.services[1].source, "services[1]")

    def test_roundTrip(self) -> None:
        """
        toDict(fromDict(d)) == d for a representative GOST file, unknown
        keys included (a service's recorders, top-level tls, ...).
        """
        data = yaml.safe_load(GOST_FILE)
        cfg = Config.fromDict(data)
        self.assertEqual(cfg.toDict(), data)
        self.assertEqual(cfg.extra, {"tls": {"certFile": "cert.pem", "keyFile": "key.pem"}})
        self.assertEqual(cfg.services[0].extra, {"recorders": data["services"][0]["recorders"]})
        # And through dumpConfig, both formats.
        self.assertEqual(yaml.safe_load(dumpConfig(cfg, "yaml")), data)
        self.assertEqual(json.loads(dumpConfig(cfg, "json")), data)
        # Printing again gives the same text (stable).
        self.assertEqual(dumpConfig(Config.fromDict(yaml.safe_load(dumpConfig(cfg, "yaml"))), "yaml"), dumpConfig(cfg, "yaml"))

    def test_unknownKeysKeptInOrderAfterKnown(self) -> None:
        cfg = Config.fromDict({"services": [{"name": "s", "zzz": 1, "addr": ":1"}], "api": {"addr": ":18080"}, "x": [1]})
        self.assertEqual(cfg.toDict(), {"services": [{"name": "s", "addr": ":1", "zzz": 1}], "api": {"addr": ":18080"}, "x": [1]})

    def test_jsonByExtension(self) -> None:
        d = self.tempDir()
        data = yaml.safe_load(GOST_FILE)
        path = self.writeFile(d, "gost.json", json.dumps(data))
        self.assertEqual(loadSource(path).toDict(), data)
        path = self.writeFile(d, "upper.JSON", json.dumps(data))
        self.assertEqual(loadSource(path).toDict(), data)
        # A .json file is read as JSON, not YAML.
        path = self.writeFile(d, "yamlish.json", "services: []\n")
        e = self.assertRaises(ConfigError, loadSource, path)
        self.assertIn(path, str(e))

    def test_ymlExtension(self) -> None:
        path = self.writeFile(self.tempDir(), "gost.yml", "services:\n- {name: a, addr: ':1', handler: {type: relay}}\n")
        self.assertEqual(loadSource(path).services[0].handler.type, "relay")  # type: ignore[union-attr]

    def test_stdinYAML(self) -> None:
        cfg = loadSource("-", stdin=io.StringIO(GOST_FILE))
        self.assertEqual(cfg.toDict(), yaml.safe_load(GOST_FILE))

    def test_stdinJSON(self) -> None:
        text = json.dumps({"services": [{"name": "a", "addr": ":1", "handler": {"type": "relay"}}]})
        cfg = loadSource("-", stdin=io.StringIO(text))
        self.assertEqual(cfg.services[0].name, "a")

    def test_stdinThroughOptions(self) -> None:
        """
        C{-C -} reads standard input.
        """
        self.patch(sys, "stdin", io.StringIO("services:\n- {name: from-stdin, addr: ':1', handler: {type: relay}}\n"))
        options = Options()
        options.parseOptions(["-C", "-"])
        self.assertEqual([s.name for s in options.loadConfig().services], ["from-stdin"])

    def test_inlineJSON(self) -> None:
        cfg = loadSource('{"services": [{"name": "inline", "addr": ":1", "handler": {"type": "relay"}}]}')
        self.assertEqual(cfg.services[0].name, "inline")
        cfg = loadSource('  {"services": []}  ')
        self.assertEqual(cfg.services, [])
        self.assertRaises(ConfigError, loadSource, '{"services": [')

    def test_inlineJSONThroughOptions(self) -> None:
        options = Options()
        options.parseOptions(["-C", '{"services": [{"name": "inline", "addr": ":1", "handler": {"type": "relay"}}]}'])
        self.assertEqual([s.name for s in options.loadConfig().services], ["inline"])

    def test_caseInsensitiveKeys(self) -> None:
        """
        Keys are matched case-insensitively (viper).
        """
        path = self.writeFile(
            self.tempDir(),
            "gost.yaml",
            "Services:\n- NAME: a\n  Addr: ':1'\n  Handler:\n    Type: relay\n    Metadata: {ReadTimeout: 5s}\n"
            "  LISTENER: {type: tcp}\nChains:\n- name: c\n  HOPS:\n  - name: h\n    Nodes: [{name: n, addr: 'x:1', Connector: {type: relay}}]\n",
        )
        cfg = loadSource(path)
        svc = cfg.services[0]
        self.assertEqual((svc.name, svc.addr), ("a", ":1"))
        self.assertEqual(svc.handler.type, "relay")  # type: ignore[union-attr]
        self.assertEqual(svc.listener.type, "tcp")  # type: ignore[union-attr]
        self.assertEqual(svc.handler.md.getDuration("readTimeout"), 5.0)  # type: ignore[union-attr]
        self.assertEqual(cfg.chains[0].hops[0].nodes[0].connector.type, "relay")  # type: ignore[union-attr]
        self.assertEqual(svc.extra, {})

    def test_metadataDurations(self) -> None:
        """
        Metadata durations may be strings or integers (seconds); typed
        durations are Go duration strings.
        """
        path = self.writeFile(
            self.tempDir(),
            "gost.yaml",
            "services:\n- name: a\n  addr: ':1'\n  handler:\n    type: relay\n"
            "    metadata: {readTimeout: 15s, idleTimeout: 30, x: '10', y: 1m30s, bind: 1}\n"
            "  forwarder:\n    selector: {strategy: round, failTimeout: 1m30s}\n    nodes: [{name: t, addr: 'h:1'}]\n",
        )
        cfg = loadSource(path)
        md = cfg.services[0].handler.md  # type: ignore[union-attr]
        self.assertEqual(
            [md.getDuration(k) for k in ("readTimeout", "idleTimeout", "x", "y")],
            [15.0, 30.0, 10.0, 90.0],
        )
        self.assertTrue(md.getBool("bind"))
        self.assertEqual(cfg.services[0].forwarder.selector.failTimeout, 90.0)  # type: ignore[union-attr]
        self.assertEqual(cfg.toDict()["services"][0]["forwarder"]["selector"]["failTimeout"], "1m30s")
        # Metadata is printed back as given.
        self.assertEqual(cfg.toDict()["services"][0]["handler"]["metadata"]["idleTimeout"], 30)

    def test_badTypedDuration(self) -> None:
        e = self.assertRaises(
            ConfigError, Config.fromDict, {"services": [{"forwarder": {"selector": {"failTimeout": "soon"}}}]}
        )
        self.assertIn("services[0].forwarder.selector.failTimeout", str(e))

    def test_badYAMLNamesFile(self) -> None:
        path = self.writeFile(self.tempDir(), "bad.yaml", "services:\n- name: [unclosed\n")
        e = self.assertRaises(ConfigError, loadSource, path)
        self.assertIn(path, str(e))
        self.assertIn("YAML", str(e))

    def test_badJSONNamesFile(self) -> None:
        path = self.writeFile(self.tempDir(), "bad.json", '{"services": [}')
        e = self.assertRaises(ConfigError, loadSource, path)
        self.assertIn(path, str(e))

    def test_missingFileNamesFile(self) -> None:
        path = os.path.join(self.tempDir(), "nope.yaml")
        e = self.assertRaises(ConfigError, loadSource, path)
        self.assertIn(path, str(e))

    def test_topLevelNotMapping(self) -> None:
        path = self.writeFile(self.tempDir(), "list.yaml", "- a\n- b\n")
        e = self.assertRaises(ConfigError, loadSource, path)
        self.assertIn(path, str(e))

    def test_emptyFile(self) -> None:
        path = self.writeFile(self.tempDir(), "empty.yaml", "# nothing\n")
        self.assertEqual(loadSource(path).toDict(), {})

    def test_wrongShapes(self) -> None:
        e = self.assertRaises(ConfigError, Config.fromDict, {"services": {"name": "a"}})
        self.assertIn("services", str(e))
        e = self.assertRaises(ConfigError, Config.fromDict, {"services": ["relay://:1"]})
        self.assertIn("services[0]", str(e))
        e = self.assertRaises(ConfigError, Config.fromDict, {"services": [{"handler": "relay"}]})
        self.assertIn("services[0].handler", str(e))
        e = self.assertRaises(ConfigError, Config.fromDict, {"services": [{"handler": {"metadata": ["a"]}}]})
        self.assertIn("services[0].handler.metadata", str(e))

    def test_hopByName(self) -> None:
        """
        A hop given by name only refers to a top-level hop.
        """
        cfg = Config.fromDict({"chains": [{"name": "c", "hops": ["shared", {"name": "h2"}]}], "hops": [{"name": "shared"}]})
        self.assertEqual([h.name for h in cfg.chains[0].hops], ["shared", "h2"])
        self.assertIsNotNone(cfg.hop("shared"))

    def test_nullSections(self) -> None:
        """
        BUG: a section key with no value (C{chains:} with its entries
        commented out, a common YAML edit) is null; GOST reads it as an empty
        list.  Config.fromDict keeps None, and then Config.merge (used by
        Options.loadConfig for every -C) and checkConfig crash with
        TypeError ('NoneType' object is not iterable), which makeService does
        not catch: the user gets a traceback.  Repro:
        Config().merge(Config.fromDict({"services": None})).
        """
        path = self.writeFile(
            self.tempDir(),
            "gost.yaml",
            "services:\n- {name: a, addr: '127.0.0.1:0', handler: {type: relay}, listener: {type: tcp}}\n"
            "chains:\n# - name: chain-0\nauthers:\n",
        )
        options = Options()
        options.parseOptions(["-C", path])
        try:
            cfg = options.loadConfig()
            problems = checkConfig(cfg)
        except TypeError as e:
            self.fail(f"a null section crashes loading: TypeError: {e}")
        self.assertEqual(cfg.chains, [])
        self.assertEqual(cfg.authers, [])
        self.assertEqual(problems, [])


class FindDefaultTests(TempDirMixin, unittest.SynchronousTestCase):
    """
    The default search: /etc/gost, ~/.gost, then the working directory;
    gost.yaml, gost.yml, gost.json in each.
    """

    def setUp(self) -> None:
        self.home = self.tempDir()
        self.cwd = self.tempDir()
        saved = os.environ.get("HOME")
        os.environ["HOME"] = self.home

        def restoreHome() -> None:
            if saved is None:
                os.environ.pop("HOME", None)
            else:
                os.environ["HOME"] = saved

        self.addCleanup(restoreHome)
        here = os.getcwd()
        os.chdir(self.cwd)
        self.addCleanup(os.chdir, here)
        # What the machine has in /etc/gost wins over everything we make.
        self.etc = None
        for name in files.SEARCH_NAMES:
            if os.path.isfile(os.path.join("/etc/gost", name)):
                self.etc = os.path.join("/etc/gost", name)
                break

    def assertFound(self, expected: str | None) -> None:
        found = findDefault()
        if self.etc is not None:
            self.assertEqual(found, self.etc)
            return
        if expected is None:
            self.assertIsNone(found)
        else:
            self.assertIsNotNone(found)
            self.assertEqual(os.path.realpath(found), os.path.realpath(expected))  # type: ignore[arg-type]

    def test_searchOrder(self) -> None:
        self.assertEqual(files.SEARCH_DIRECTORIES, ("/etc/gost", "~/.gost", "."))
        self.assertEqual(files.SEARCH_NAMES, ("gost.yaml", "gost.yml", "gost.json"))

    def test_nothing(self) -> None:
        self.assertFound(None)

    def test_workingDirectory(self) -> None:
        path = self.writeFile(self.cwd, "gost.json", "{}")
        self.assertFound(path)

    def test_homeBeforeWorkingDirectory(self) -> None:
        self.writeFile(self.cwd, "gost.yaml", "{}")
        home = self.writeFile(self.home, ".gost/gost.json", "{}")
        self.assertFound(home)

    def test_namesInOrder(self) -> None:
        self.writeFile(self.home, ".gost/gost.json", "{}")
        yml = self.writeFile(self.home, ".gost/gost.yml", "{}")
        self.assertFound(yml)
        yaml_ = self.writeFile(self.home, ".gost/gost.yaml", "{}")
        self.assertFound(yaml_)

    def test_directoryIsNotAFile(self) -> None:
        os.makedirs(os.path.join(self.home, ".gost", "gost.yaml"))
        path = self.writeFile(self.cwd, "gost.yml", "{}")
        self.assertFound(path)

    def test_optionsUseDefault(self) -> None:
        """
        Without -L and -C the command line loads the default file; with
        none, it is a usage error.
        """
        options = Options()
        options.parseOptions([])
        if self.etc is None:
            self.assertRaises(usage.UsageError, options.loadConfig)
        self.writeFile(self.home, ".gost/gost.yaml", "services:\n- {name: from-home, addr: ':1', handler: {type: relay}}\n")
        cfg = options.loadConfig()
        if self.etc is None:
            self.assertEqual([s.name for s in cfg.services], ["from-home"])

    def test_optionsNameDefaultFile(self) -> None:
        """
        A default file nobody named is named in a warning line, so that a
        user who wrote C{gost.yaml} with C{-O yaml} sees why services start.
        """
        if self.etc is not None:
            raise unittest.SkipTest(f"{self.etc} exists on this machine")
        path = self.writeFile(self.cwd, "gost.yaml", "services:\n- {name: from-cwd, addr: ':1', handler: {type: relay}}\n")
        options = Options()
        options.parseOptions([])
        warnings = options.loadConfig().warnings
        self.assertEqual(len(warnings), 1, warnings)
        self.assertIn("no -L or -C given: running", warnings[0])
        self.assertEqual(os.path.realpath(warnings[0].split("running ")[1].split(" (")[0]), os.path.realpath(path))

    def test_optionsNoSearchWithListen(self) -> None:
        """
        -L alone does not load the default file.
        """
        self.writeFile(self.cwd, "gost.yaml", "services:\n- {name: from-cwd, addr: ':1', handler: {type: relay}}\n")
        options = Options()
        options.parseOptions(["-L", "relay://:2"])
        self.assertEqual([s.name for s in options.loadConfig().services], ["service-0"])


class OptionsMergeTests(TempDirMixin, unittest.SynchronousTestCase):
    def test_filesThenCommandLine(self) -> None:
        d = self.tempDir()
        first = self.writeFile(
            d,
            "a.yaml",
            "services:\n- {name: file-a, addr: ':1', handler: {type: relay}}\n"
            "chains:\n- {name: file-chain, hops: [{name: h, nodes: [{name: n, addr: 'x:1'}]}]}\n"
            "bypasses:\n- {name: file-bypass, matchers: [a]}\nlog: {level: info}\n",
        )
        second = self.writeFile(d, "b.json", json.dumps({"services": [{"name": "file-b", "addr": ":2"}], "log": {"level": "debug"}}))
        options = Options()
        options.parseOptions(["-C", first, "-L", "relay://:3?bypass=z", "-C", second, "-F", "relay://h:4"])
        cfg = options.loadConfig()
        self.assertEqual([s.name for s in cfg.services], ["file-a", "file-b", "service-0"])
        self.assertEqual([c.name for c in cfg.chains], ["file-chain", "chain-0"])
        self.assertEqual([b.name for b in cfg.bypasses], ["file-bypass", "bypass-0"])
        self.assertEqual(cfg.services[2].handler.chain, "chain-0")  # type: ignore[union-attr]
        # A later source's scalar section wins.
        self.assertEqual(cfg.log, {"level": "debug"})

    def test_workers(self) -> None:
        options = Options()
        options.parseOptions(["-L", ":1", "--workers", "3"])
        self.assertEqual(options.loadConfig().workers, 3)
        options = Options()
        options.parseOptions(["-L", ":1", "--workers", "x"])
        self.assertRaises(usage.UsageError, options.loadConfig)

    def test_outputFormat(self) -> None:
        options = Options()
        self.assertRaises(usage.UsageError, options.parseOptions, ["-L", ":1", "-O", "xml"])

    def test_singleDashLongFlags(self) -> None:
        self.assertEqual(
            rewriteGostFlags(["-L", ":1", "-metrics", ":9000", "-api=:1", "-DD", "-O", "yaml", "--", "-metrics"]),
            ["-L", ":1", "--metrics", ":9000", "--api=:1", "-DD", "-O", "yaml", "--", "-metrics"],
        )
        options = Options()
        options.parseOptions(["-L", ":1", "-metrics", ":9000", "-F", "relay://h:1"])
        self.assertEqual(options["metrics"], ":9000")
        self.assertEqual(options["listen"], [":1"])
        self.assertEqual(options["forward"], ["relay://h:1"])


class RefusalTests(unittest.SynchronousTestCase):
    """
    A configuration naming types we do not implement is refused as a
    whole, one line per offending type, naming the URL or YAML path.
    """

    CONFIG = {
        "services": [
            {"name": "ok", "addr": "127.0.0.1:0", "handler": {"type": "relay"}, "listener": {"type": "tcp"}},
            {"name": "q", "addr": ":2", "handler": {"type": "relay"}, "listener": {"type": "quic"}},
            {
                "name": "g",
                "addr": ":3",
                "handler": {"type": "sshd"},
                "listener": {"type": "grpc"},
                "forwarder": {"selector": {"strategy": "parallel"}, "nodes": [{"name": "t", "addr": "x:1"}]},
            },
        ],
        "chains": [
            {
                "name": "chain-0",
                "hops": [
                    {
                        "name": "hop-0",
                        "selector": {"strategy": "parallel"},
                        "nodes": [
                            {"name": "n0", "addr": "x:1", "connector": {"type": "relay"}, "dialer": {"type": "kcpx-not-a-type"}},
                            {"name": "n1", "addr": "x:1", "connector": {"type": "ssu"}, "dialer": {"type": "tcp"}},
                        ],
                    }
                ],
            }
        ],
    }

    def assertLines(self, problems: list[str], expected: list[tuple[str, str]]) -> None:
        """
        Exactly one line per expected (place, word), and nothing else.
        """
        self.assertEqual(len(problems), len(expected), "\n".join(problems))
        for place, word in expected:
            matching = [p for p in problems if p.startswith(place) and word in p]
            self.assertEqual(len(matching), 1, f"{place} {word}: {problems}")

    def test_fileConfiguration(self) -> None:
        cfg = Config.fromDict(self.CONFIG)
        expected = [
            ("services[1]", "'quic'"),
            ("services[2]", "'sshd'"),
            ("services[2]", "'grpc'"),
            ("services[2]", "'parallel'"),
            ("chains[0].hops[0]", "'parallel'"),
            ("chains[0].hops[0].nodes[0]", "'kcpx-not-a-type'"),
            ("chains[0].hops[0].nodes[1]", "'ssu'"),
        ]
        self.assertLines(checkConfig(cfg), expected)
        e = self.assertRaises(RefusedConfiguration, buildServices, reactor, cfg)
        self.assertLines(e.problems, expected)
        self.assertIsInstance(e, ConfigError)
        self.assertEqual(str(e), "\n".join(e.problems))

    def test_commandLine(self) -> None:
        cfg = buildConfigFromCommandLine(
            ["relay://:1", "relay+quic://:2", "tcp://:3/a:1,b:2?strategy=parallel"], ["relay+grpc://h:1", "ssh://h:2"]
        )
        expected = [
            ("relay+quic://:2", "'quic'"),
            ("tcp://:3/a:1,b:2?strategy=parallel", "'parallel'"),
            ("relay+grpc://h:1", "'grpc'"),
            ("ssh://h:2", "'ssh'"),  # the ssh dialer (the connector falls back to http, implemented)
        ]
        self.assertLines(checkConfig(cfg), expected)
        e = self.assertRaises(RefusedConfiguration, buildServices, reactor, cfg)
        self.assertLines(e.problems, expected)

    def test_oneLinePerURL(self) -> None:
        """
        BUG (cosmetic): a port-range C{-L} or a multi-address C{-F} gives
        the same problem line once per expanded service / node, identical
        text repeated, although the module promises "one line per offending
        type and where it came from".  Repro: checkConfig(
        buildConfigFromCommandLine(["relay+quic://:8000-8002"], [])) gives
        the line "relay+quic://:8000-8002: listener 'quic' is not
        implemented" three times.
        """
        problems = checkConfig(buildConfigFromCommandLine(["relay+quic://:8000-8002"], ["relay+grpc://a:1,b:2"]))
        self.assertEqual(len(problems), len(set(problems)), "\n".join(problems))
        self.assertLines(problems, [("relay+quic://:8000-8002", "'quic'"), ("relay+grpc://a:1,b:2", "'grpc'")])

    def test_implementedIsAccepted(self) -> None:
        """
        The same check passes a configuration of implemented types (so the
        refusals above are about the types, not the shape).
        """
        cfg = buildConfigFromCommandLine(["relay://127.0.0.1:0", "tcp://127.0.0.1:0/a:1?strategy=fifo"], ["relay://h:1?strategy=rand"])
        self.assertEqual(checkConfig(cfg), [])

    def test_undefinedChain(self) -> None:
        cfg = Config.fromDict({"services": [{"name": "a", "addr": ":1", "handler": {"type": "relay", "chain": "nope"}}]})
        problems = checkConfig(cfg)
        self.assertEqual(len(problems), 1)
        self.assertIn("'nope'", problems[0])
        self.assertTrue(problems[0].startswith("services[0]"))

    def test_duplicateServiceNames(self) -> None:
        cfg = Config.fromDict({"services": [{"name": "a", "addr": ":1", "handler": {"type": "relay"}}] * 2})
        problems = checkConfig(cfg)
        self.assertEqual(len(problems), 1)
        self.assertTrue(problems[0].startswith("services[1]"))

    def test_namedTopLevelHopRefused(self) -> None:
        """
        A chain hop referring to a top-level hop whose node uses an
        unimplemented dialer is refused too.
        """
        cfg = Config.fromDict(
            {
                "services": [{"name": "a", "addr": "127.0.0.1:0", "handler": {"type": "relay", "chain": "c"}}],
                "chains": [{"name": "c", "hops": [{"name": "shared"}]}],
                "hops": [{"name": "shared", "nodes": [{"name": "n", "addr": "x:1", "connector": {"type": "relay"}, "dialer": {"type": "quic"}}]}],
            }
        )
        e = self.assertRaises(RefusedConfiguration, buildServices, reactor, cfg)
        self.assertEqual(len(e.problems), 1, e.problems)
        self.assertIn("'quic'", e.problems[0])

    def test_addressWithoutPort(self) -> None:
        """
        BUG: a service address without a port is refused by GOST (Go's
        net.Listen: "missing port in address"; viper turns YAML's
        C{addr: 8080} into the string "8080" first).  buildServices accepts
        C{addr: "127.0.0.1"} and C{addr: "8080"} (splitHostPort reads a
        missing port as 0: the service would listen on a random port, or
        try to bind the "host" 8080), and C{addr: 8080} (a YAML int) crashes
        with AttributeError ('int' object has no attribute 'startswith')
        instead of a refusal.  Repro: buildServices(reactor,
        Config.fromDict({"services": [{"name": "s", "addr": "127.0.0.1",
        "handler": {"type": "relay"}}]})) returns a MultiService.
        """
        outcomes = {}
        for addr in ("127.0.0.1", "8080", 8080):
            cfg = Config.fromDict(
                {"services": [{"name": "s", "addr": addr, "handler": {"type": "relay"}, "listener": {"type": "tcp"}}]}
            )
            try:
                buildServices(reactor, cfg)
            except RefusedConfiguration as e:
                outcomes[repr(addr)] = "refused" if e.problems[0].startswith("services[0]") else e.problems[0]
            except Exception as e:
                outcomes[repr(addr)] = f"{type(e).__name__}: {e}"
            else:
                outcomes[repr(addr)] = "accepted"
        self.assertEqual(outcomes, {repr(a): "refused" for a in ("127.0.0.1", "8080", 8080)})

    def test_makeServiceExitsWithProblems(self) -> None:
        """
        The command line prints one line per problem and exits 1.
        """
        options = Options()
        options.parseOptions(["-L", "relay+quic://:1", "-L", "relay+grpc://:2"])
        err = io.StringIO()
        self.patch(sys, "stderr", err)
        from gostrelay.tap import makeService

        e = self.assertRaises(SystemExit, makeService, options, reactor)
        self.assertEqual(e.code, 1)
        lines = err.getvalue().splitlines()
        self.assertEqual(len(lines), 2, lines)
        self.assertIn("relay+quic://:1", lines[0])
        self.assertIn("relay+grpc://:2", lines[1])


class AutherTests(TempDirMixin, unittest.SynchronousTestCase):
    USERS = "# users of the relay\n\nalice s3cret\n  bob\tb0b pass  \ncarol\n#dave nope\n"

    def usersFile(self) -> str:
        return self.writeFile(self.tempDir(), "users.txt", self.USERS)

    def test_autherFile(self) -> None:
        path = self.usersFile()
        cfg = Config.fromDict(
            yaml.safe_load(
                f"services:\n- name: s\n  addr: ':1'\n  handler: {{type: relay, auther: users}}\n"
                f"authers:\n- name: users\n  file: {{path: {json.dumps(path)}}}\n"
            )
        )
        handler = cfg.services[0].handler
        assert handler is not None
        auth = authenticatorFor(handler, cfg, "services[0]")
        assert auth is not None
        self.assertTrue(auth.authenticate("alice", "s3cret"))
        self.assertFalse(auth.authenticate("alice", "wrong"))
        self.assertFalse(auth.authenticate("alice", ""))
        self.assertTrue(auth.authenticate("bob", "b0b pass"))
        # A user without a password accepts any password.
        self.assertTrue(auth.authenticate("carol", "anything"))
        # Comments are not users.
        self.assertFalse(auth.authenticate("#dave", "nope"))
        self.assertFalse(auth.authenticate("dave", "nope"))
        self.assertFalse(auth.authenticate("mallory", "s3cret"))
        self.assertEqual(len(auth), 3)

    def test_autherAuthsAndFile(self) -> None:
        path = self.usersFile()
        cfg = Config.fromDict(
            {
                "authers": [
                    {"name": "a", "auths": [{"username": "zed", "password": "z"}], "file": {"path": path}},
                    {"name": "b", "auths": [{"username": "yan", "password": "y"}]},
                ]
            }
        )
        auth = authenticatorFor(HandlerConfig(type="relay", authers=["a", "b"]), cfg, "here")
        assert auth is not None
        for user, password in (("zed", "z"), ("alice", "s3cret"), ("yan", "y")):
            self.assertTrue(auth.authenticate(user, password), user)
        self.assertFalse(auth.authenticate("yan", "z"))

    def test_handlerAuthFile(self) -> None:
        path = self.usersFile()
        auth = authenticatorFor(HandlerConfig.fromDict({"type": "relay", "auth": {"file": path}}), Config(), "here")
        assert auth is not None
        self.assertTrue(auth.authenticate("alice", "s3cret"))
        self.assertFalse(auth.authenticate("alice", "x"))

    def test_undefinedAuther(self) -> None:
        e = self.assertRaises(ConfigError, authenticatorFor, HandlerConfig(type="relay", auther="nope"), Config(), "services[0]")
        self.assertIn("nope", str(e))
        self.assertIn("services[0]", str(e))

    def test_missingUsersFile(self) -> None:
        missing = os.path.join(self.tempDir(), "none.txt")
        cfg = Config.fromDict({"authers": [{"name": "a", "file": {"path": missing}}]})
        e = self.assertRaises(ConfigError, authenticatorFor, HandlerConfig(type="relay", auther="a"), cfg, "services[0]")
        self.assertIn(missing, str(e))

    def test_numericPasswordsFromYAML(self) -> None:
        """
        BUG: YAML reads C{password: 123456} as an integer.  GOST (viper's
        weakly typed decoding) takes it as the string "123456"; we keep the
        int in AuthConfig.password, and Authenticator.authenticate then
        raises AttributeError ('int' object has no attribute 'encode') on
        every login attempt -- inside the relay handler, for each
        connection.  Same for C{auth: {username: bob, password: 2024}} and
        numeric user names.  Repro: authenticatorFor(HandlerConfig(
        type="relay", auther="u"), Config.fromDict({"authers": [{"name": "u",
        "auths": [{"username": "alice", "password": 123456}]}]}), "x")
        .authenticate("alice", "123456").
        """
        cfg = Config.fromDict(
            yaml.safe_load(
                "authers:\n- name: users\n  auths:\n  - {username: alice, password: 123456}\n"
                "  - {username: 1000, password: pw}\n"
            )
        )
        results = {}
        for name, handler in (
            ("auther", HandlerConfig(type="relay", auther="users")),
            ("auth", HandlerConfig.fromDict(yaml.safe_load("{type: relay, auth: {username: bob, password: 2024}}"))),
        ):
            auth = authenticatorFor(handler, cfg, "services[0]")
            assert auth is not None
            try:
                if name == "auther":
                    results[name] = (auth.authenticate("alice", "123456"), auth.authenticate("1000", "pw"))
                else:
                    results[name] = (auth.authenticate("bob", "2024"), True)
            except Exception as e:
                results[name] = f"{type(e).__name__}: {e}"  # type: ignore[assignment]
        self.assertEqual(results, {"auther": (True, True), "auth": (True, True)})

    def test_noAuth(self) -> None:
        self.assertIsNone(authenticatorFor(HandlerConfig(type="relay"), Config(), "x"))
        self.assertIsNone(authenticatorFor(HandlerConfig.fromDict({"type": "relay", "auth": {"username": ""}}), Config(), "x"))
        auth = authenticatorFor(HandlerConfig.fromDict({"type": "relay", "auth": {"username": "u", "password": "p"}}), Config(), "x")
        assert auth is not None
        self.assertTrue(auth.authenticate("u", "p"))
        self.assertFalse(auth.authenticate("u", "q"))


# -- a file-configured relay service on the real reactor


class Collector(Protocol):
    """
    Send C{first}; fire C{enough} once C{want} bytes arrived and C{lost}
    when the connection is gone.
    """

    def __init__(self, first: bytes, want: int) -> None:
        self.first = first
        self.want = want
        self.data = b""
        self.enough: defer.Deferred[bytes] = defer.Deferred()
        self.lost: defer.Deferred[None] = defer.Deferred()

    def connectionMade(self) -> None:
        self.transport.write(self.first)  # type: ignore[union-attr]

    def dataReceived(self, data: bytes) -> None:
        self.data += data
        if len(self.data) >= self.want and not self.enough.called:
            self.enough.callback(self.data)

    def connectionLost(self, reason: Failure = None) -> None:  # type: ignore[assignment]
        if not self.enough.called:
            self.enough.callback(self.data)
        self.lost.callback(None)


class RunningFileServiceTests(TempDirMixin, unittest.TestCase):
    """
    A GOST YAML file with a relay service runs: relay CONNECT to a local
    echo server, with the handler's auther reading a users file.
    """

    timeout = 20

    @defer.inlineCallbacks
    def setUp(self):  # type: ignore[no-untyped-def]
        self.echo = EchoFactory()
        self.echoPort = reactor.listenTCP(0, self.echo, interface="127.0.0.1")
        self.addCleanup(self.echoPort.stopListening)
        d = self.tempDir()
        users = self.writeFile(d, "users.txt", "# relay users\nalice s3cret\n")
        path = self.writeFile(
            d,
            "gost.yaml",
            "services:\n"
            "- name: relay-0\n"
            "  addr: 127.0.0.1:0\n"
            "  handler:\n"
            "    type: relay\n"
            "    auther: users\n"
            "    metadata: {readTimeout: 5s}\n"
            "  listener: {type: tcp}\n"
            "authers:\n"
            "- name: users\n"
            f"  file: {{path: {json.dumps(users)}}}\n",
        )
        self.top = buildServices(reactor, loadSource(path))
        self.assertTrue(IService.providedBy(self.top))
        self.top.startService()
        self.addCleanup(self.top.stopService)
        relay = self.top.getServiceNamed("relay-0")
        port = yield relay.listening
        self.relayPort = port.getHost().port
        self.assertNotEqual(self.relayPort, 0)

    @defer.inlineCallbacks
    def connect(self, first: bytes, want: int):  # type: ignore[no-untyped-def]
        client = Collector(first, want)
        yield connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", self.relayPort), client)
        self.addCleanup(lambda: client.lost)
        self.addCleanup(lambda: client.transport.loseConnection())
        return client

    @defer.inlineCallbacks
    def test_connect(self):  # type: ignore[no-untyped-def]
        target = f"127.0.0.1:{self.echoPort.getHost().port}"
        request = connectRequest(target, username="alice", password="s3cret").encode()
        client = yield self.connect(request + b"hello", len(OK) + 5)
        data = yield client.enough
        self.assertEqual(data, OK + b"hello")
        client.transport.write(b" again")
        client.want = len(OK) + 11
        client.enough = defer.Deferred()
        data = yield client.enough
        self.assertEqual(data, OK + b"hello again")
        self.assertEqual(len(self.echo.accepted), 1)
        client.transport.loseConnection()
        yield client.lost
        # The relay closes its side to the target too.
        yield waitUntil(lambda: not self.echo.open, 5, "the relay's connection to the target closed")

    @defer.inlineCallbacks
    def test_wrongPassword(self):  # type: ignore[no-untyped-def]
        target = f"127.0.0.1:{self.echoPort.getHost().port}"
        request = connectRequest(target, username="alice", password="wrong").encode()
        client = yield self.connect(request, 100)
        yield client.lost
        self.assertEqual(client.data, UNAUTHORIZED)
        self.assertEqual(self.echo.accepted, [])

    @defer.inlineCallbacks
    def test_stopClosesPort(self):  # type: ignore[no-untyped-def]
        """
        Stopping the services stops listening.
        """
        yield self.top.stopService()
        client = Collector(b"", 1)
        d = connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", self.relayPort), client)
        from twisted.internet.error import ConnectError

        yield self.assertFailure(d, ConnectError)
