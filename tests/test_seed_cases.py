"""
The seed cases: every command line of GOST's relay page with the YAML the
page gives for it (C{tests/data/seed-cases.yaml}, see C{tests/data/README.md}),
and the CLI listings of spec-relay.md section 10.3, checked through both paths that print a configuration:
L{buildConfigFromCommandLine} + L{dumpConfig}, and the real command line
(L{Options.parseOptions} + L{makeService} with C{-O yaml}).

The rule is the one in seed-cases.yaml's header: the printed YAML, parsed,
must contain every key and value of the expected YAML (lists in the same
order and of the same length; more keys are allowed); metadata values
compare as strings, booleans lower-cased ("true" == True).

The cases file lives in the repository; a missing or damaged file is a
failure, not a skip.
"""

from __future__ import annotations

import io
import os
import re
import shlex
import sys
from typing import Any

import yaml
from twisted.trial.unittest import SynchronousTestCase

from gostrelay.config.files import dumpConfig
from gostrelay.config.url import buildConfigFromCommandLine
from gostrelay.tap import Options, makeService

SEED_CASES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "seed-cases.yaml")

#: How many command lines GOST's relay page has; each is one case.
PAGE_COMMAND_LINES = 12


def _loadCases() -> tuple[list[dict[str, Any]], str | None]:
    try:
        with open(SEED_CASES, encoding="utf-8") as f:
            data = yaml.safe_load(f)
        cases = data["cases"]
        if not isinstance(cases, list):
            raise TypeError("'cases' is not a list")
        return cases, None
    except Exception as e:  # reported by test_seedFilePresent
        return [], f"{SEED_CASES}: {type(e).__name__}: {e}"


CASES, LOAD_ERROR = _loadCases()


# -- the comparison rule


def _metadataText(value: Any) -> Any:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float, str)):
        return str(value)
    if isinstance(value, list):
        return [_metadataText(v) for v in value]
    if isinstance(value, dict):
        return {k: _metadataText(v) for k, v in value.items()}
    return value


def containmentProblems(expected: Any, actual: Any, path: str = "", inMetadata: bool = False) -> list[str]:
    """
    Every place where C{actual} does not contain C{expected} (the seed rule).
    """
    problems: list[str] = []
    if isinstance(expected, dict):
        if not isinstance(actual, dict):
            return [f"{path or '<top>'}: expected a mapping, got {actual!r}"]
        for key, value in expected.items():
            where = f"{path}.{key}" if path else str(key)
            if key not in actual:
                problems.append(f"{where}: missing (have keys {sorted(map(str, actual))})")
                continue
            problems.extend(
                containmentProblems(value, actual[key], where, inMetadata or key == "metadata")
            )
        return problems
    if isinstance(expected, list):
        if not isinstance(actual, list):
            return [f"{path}: expected a list, got {actual!r}"]
        if len(expected) != len(actual):
            problems.append(f"{path}: expected {len(expected)} items, got {len(actual)}: {actual!r}")
        for i, (e, a) in enumerate(zip(expected, actual)):
            problems.extend(containmentProblems(e, a, f"{path}[{i}]", inMetadata))
        return problems
    if inMetadata:
        if _metadataText(expected) != _metadataText(actual):
            problems.append(f"{path}: expected {expected!r}, got {actual!r}")
        return problems
    if expected != actual or type(expected) is not type(actual) and not (
        isinstance(expected, (int, float)) and isinstance(actual, (int, float)) and not isinstance(actual, bool)
    ):
        problems.append(f"{path}: expected {expected!r}, got {actual!r}")
    return problems


def commandLine(cli: str) -> tuple[list[str], list[str], list[str]]:
    """
    Split a C{gost ...} line: the arguments without C{gost}, the C{-L}
    values and the C{-F} values.
    """
    args = shlex.split(cli)
    if args and args[0] == "gost":
        args = args[1:]
    services: list[str] = []
    nodes: list[str] = []
    i = 0
    while i < len(args):
        if args[i] in ("-L", "-F") and i + 1 < len(args):
            (services if args[i] == "-L" else nodes).append(args[i + 1])
            i += 2
            continue
        i += 1
    return args, services, nodes


def viaBuilder(cli: str) -> Any:
    _, services, nodes = commandLine(cli)
    text = dumpConfig(buildConfigFromCommandLine(services, nodes), "yaml")
    return yaml.safe_load(text)


def runOutput(testCase: SynchronousTestCase, args: list[str], fmt: str = "yaml") -> str:
    """
    Run C{args + ["-O", fmt]} through the real command line; it must exit 0
    having written the configuration to standard output.
    """
    options = Options()
    options.parseOptions(list(args) + ["-O", fmt])
    captured = io.StringIO()
    saved = sys.stdout
    sys.stdout = captured
    try:
        with testCase.assertRaises(SystemExit) as cm:
            makeService(options)
    finally:
        sys.stdout = saved
    testCase.assertEqual(cm.exception.code, 0, f"{args}: exit status")
    return captured.getvalue()


def viaCommandLine(testCase: SynchronousTestCase, cli: str) -> Any:
    args, _, _ = commandLine(cli)
    text = runOutput(testCase, args)
    testCase.assertTrue(text.strip(), f"{cli}: -O yaml printed nothing")
    return yaml.safe_load(text)


class SeedFileTests(SynchronousTestCase):
    """
    The seed data itself is there and covers the page.
    """

    def test_seedFilePresent(self) -> None:
        """
        seed-cases.yaml exists and parses (a missing seed is a failure).
        """
        self.assertIsNone(LOAD_ERROR, f"cannot load the seed cases (tests/data/seed-cases.yaml): {LOAD_ERROR}")
        self.assertGreaterEqual(len(CASES), 12)
        for case in CASES:
            self.assertIn("name", case)
            self.assertIn("cli", case)
            self.assertIn("yaml", case)

    def test_everyPageCommandLineIsACase(self) -> None:
        """
        The cases file holds each of the relay page's command lines once,
        each a C{gost} command line with a unique name.
        """
        clis = [case["cli"] for case in CASES]
        self.assertEqual(len(clis), PAGE_COMMAND_LINES)
        self.assertEqual(len(set(clis)), PAGE_COMMAND_LINES)
        self.assertEqual(len({case["name"] for case in CASES}), PAGE_COMMAND_LINES)
        self.assertEqual([cli for cli in clis if not re.match(r"gost -[LF] ", cli)], [])

    def test_ruleCanFail(self) -> None:
        """
        The comparison notices a wrong value, a missing key, a wrong list
        length, and compares metadata as strings.
        """
        actual = {"a": [{"b": 1, "metadata": {"x": "true", "n": "3"}}], "extra": 1}
        self.assertEqual(containmentProblems({"a": [{"b": 1}]}, actual), [])
        self.assertEqual(containmentProblems({"a": [{"metadata": {"x": True, "n": 3}}]}, actual), [])
        self.assertTrue(containmentProblems({"a": [{"b": 2}]}, actual))
        self.assertTrue(containmentProblems({"a": [{"c": 1}]}, actual))
        self.assertTrue(containmentProblems({"a": [{"b": 1}, {"b": 1}]}, actual))
        self.assertTrue(containmentProblems({"a": [{"metadata": {"x": False}}]}, actual))
        # Outside metadata, "1" is not 1.
        self.assertTrue(containmentProblems({"a": [{"b": "1"}]}, actual))


class SeedCaseTests(SynchronousTestCase):
    """
    One test per seed case (C{test_case_<name>}), added below.
    """

    def checkCase(self, case: dict[str, Any]) -> None:
        cli = case["cli"]
        _, services, nodes = commandLine(cli)
        self.assertTrue(services, f"{cli}: no -L")
        built = viaBuilder(cli)
        printed = viaCommandLine(self, cli)
        # Both paths print the same configuration.
        self.assertEqual(printed, built, cli)
        for label, actual in (("buildConfigFromCommandLine", built), ("gostrelay -O yaml", printed)):
            if case["yaml"] is None:
                # The page gives no YAML: the service must be there.
                self.assertIsInstance(actual, dict, f"{label}: {cli}")
                self.assertEqual(len(actual.get("services") or []), len(services), f"{label}: {cli}")
                for i, svc in enumerate(actual["services"]):
                    self.assertEqual(svc["name"], f"service-{i}")
                    self.assertTrue(svc["handler"]["type"])
                    self.assertTrue(svc["listener"]["type"])
                if nodes:
                    self.assertEqual(len(actual["chains"][0]["hops"]), len(nodes))
            else:
                problems = containmentProblems(case["yaml"], actual)
                self.assertEqual(problems, [], f"{label}: {cli}\n{yaml.safe_dump(actual, sort_keys=False)}")

    def test_proxyCasesDetail(self) -> None:
        """
        The two cases without YAML on the page, in the detail spec 9.2/9.3
        give: userinfo becomes handler.auth / connector.auth, nodelay goes
        to every node scope.
        """
        server = viaCommandLine(self, "gost -L relay://username:password@:12345")
        self.assertEqual(
            containmentProblems(
                {
                    "services": [
                        {
                            "name": "service-0",
                            "addr": ":12345",
                            "handler": {"type": "relay", "auth": {"username": "username", "password": "password"}},
                            "listener": {"type": "tcp"},
                        }
                    ]
                },
                server,
            ),
            [],
        )
        self.assertNotIn("chains", server)
        client = viaCommandLine(self, "gost -L :8080 -F relay://username:password@:12345?nodelay=false")
        self.assertEqual(
            containmentProblems(
                {
                    "services": [
                        {
                            "name": "service-0",
                            "addr": ":8080",
                            "handler": {"type": "auto", "chain": "chain-0"},
                            "listener": {"type": "tcp"},
                        }
                    ],
                    "chains": [
                        {
                            "name": "chain-0",
                            "hops": [
                                {
                                    "name": "hop-0",
                                    "metadata": {"nodelay": False},
                                    "nodes": [
                                        {
                                            "name": "node-0",
                                            "addr": ":12345",
                                            "connector": {
                                                "type": "relay",
                                                "auth": {"username": "username", "password": "password"},
                                                "metadata": {"nodelay": False},
                                            },
                                            "dialer": {"type": "tcp", "metadata": {"nodelay": False}},
                                            "metadata": {"nodelay": False},
                                        }
                                    ],
                                }
                            ],
                        }
                    ],
                },
                client,
            ),
            [],
        )
        # The host of ":12345" is empty: no server name, so no dialer TLS.
        self.assertNotIn("tls", client["chains"][0]["hops"][0]["nodes"][0]["dialer"])
        # The auth is the connector's, not the service's.
        self.assertNotIn("auth", client["services"][0]["handler"])


def _addCaseTests() -> None:
    for case in CASES:
        name = re.sub(r"\W", "_", str(case.get("name", "unnamed")))

        def test(self: SeedCaseTests, case: dict[str, Any] = case) -> None:
            self.checkCase(case)

        test.__name__ = f"test_case_{name}"
        test.__doc__ = f"Seed case {case.get('name')}: {case.get('cli')}"
        setattr(SeedCaseTests, test.__name__, test)


_addCaseTests()


# -- spec-relay.md 10.3, listings (a) to (h)

SPEC_LISTINGS: list[tuple[str, str, str]] = [
    (
        "a",
        'gost -L "relay://user:pass@:8420?bind=true"',
        """
services:
- name: service-0
  addr: ":8420"
  handler:
    type: relay
    auth: {username: user, password: pass}
    metadata: {bind: "true"}
  listener:
    type: tcp
    metadata: {bind: "true"}
  metadata: {bind: "true"}
""",
    ),
    (
        "b",
        'gost -L :8080 -F "relay://user:pass@server.example:8420?nodelay=true"',
        """
services:
- name: service-0
  addr: ":8080"
  handler: {type: auto, chain: chain-0}
  listener: {type: tcp}
chains:
- name: chain-0
  hops:
  - name: hop-0
    metadata: {nodelay: "true"}
    nodes:
    - name: node-0
      addr: server.example:8420
      connector:
        type: relay
        auth: {username: user, password: pass}
        metadata: {nodelay: "true"}
      dialer:
        type: tcp
        tls: {serverName: server.example}
        metadata: {nodelay: "true"}
      metadata: {nodelay: "true"}
""",
    ),
    (
        "c",
        'gost -L tcp://:2222/:22 -L "udp://:1053/:53?keepAlive=true&ttl=30s" -F relay://server.example:8420',
        """
services:
- name: service-0
  addr: ":2222"
  handler: {type: tcp, chain: chain-0}
  listener: {type: tcp}
  forwarder:
    nodes:
    - {name: target-0, addr: ":22"}
- name: service-1
  addr: ":1053"
  handler:
    type: udp
    chain: chain-0
    metadata: {keepAlive: "true", ttl: 30s}
  listener:
    type: udp
    metadata: {keepAlive: "true", ttl: 30s}
  metadata: {keepAlive: "true", ttl: 30s}
  forwarder:
    nodes:
    - {name: target-0, addr: ":53"}
chains:
- name: chain-0
  hops:
  - name: hop-0
    nodes:
    - name: node-0
      addr: server.example:8420
      connector: {type: relay}
      dialer: {type: tcp, tls: {serverName: server.example}}
""",
    ),
    (
        "d-server",
        "gost -L relay://:8420/:53",
        """
services:
- name: service-0
  addr: ":8420"
  handler: {type: relay}
  listener: {type: tcp}
  forwarder:
    nodes:
    - {name: target-0, addr: ":53"}
""",
    ),
    (
        "d-client",
        "gost -L udp://:1053 -L tcp://:2222 -F relay://server.example:8420",
        """
services:
- name: service-0
  addr: ":1053"
  handler: {type: udp, chain: chain-0}
  listener: {type: udp}
- name: service-1
  addr: ":2222"
  handler: {type: tcp, chain: chain-0}
  listener: {type: tcp}
chains:
- name: chain-0
  hops:
  - name: hop-0
    nodes:
    - name: node-0
      addr: server.example:8420
      connector: {type: relay}
      dialer: {type: tcp, tls: {serverName: server.example}}
""",
    ),
    (
        "e-server",
        'gost -L "relay://:8420?bind=true"',
        """
services:
- name: service-0
  addr: ":8420"
  handler: {type: relay, metadata: {bind: "true"}}
  listener: {type: tcp, metadata: {bind: "true"}}
  metadata: {bind: "true"}
""",
    ),
    (
        "e-client",
        "gost -L rtcp://:2222/:22 -L rudp://:10053/:53 -F relay://server.example:8420",
        """
services:
- name: service-0
  addr: ":2222"
  handler: {type: rtcp}
  listener: {type: rtcp, chain: chain-0}
  forwarder:
    nodes:
    - {name: target-0, addr: ":22"}
- name: service-1
  addr: ":10053"
  handler: {type: rudp}
  listener: {type: rudp, chain: chain-0}
  forwarder:
    nodes:
    - {name: target-0, addr: ":53"}
chains:
- name: chain-0
  hops:
  - name: hop-0
    nodes:
    - name: node-0
      addr: server.example:8420
      connector: {type: relay}
      dialer: {type: tcp, tls: {serverName: server.example}}
""",
    ),
    (
        "f-tls",
        "gost -L relay+tls://:8443 -F relay+tls://server.example:8443",
        """
services:
- name: service-0
  addr: ":8443"
  handler: {type: relay, chain: chain-0}
  listener: {type: tls}
chains:
- name: chain-0
  hops:
  - name: hop-0
    nodes:
    - name: node-0
      addr: server.example:8443
      connector: {type: relay}
      dialer:
        type: tls
        tls: {serverName: server.example}
""",
    ),
    (
        "f-ws",
        "gost -L relay+ws://:8080 -F relay+ws://server.example:8080",
        """
services:
- name: service-0
  addr: ":8080"
  handler: {type: relay, chain: chain-0}
  listener: {type: ws}
chains:
- name: chain-0
  hops:
  - name: hop-0
    nodes:
    - name: node-0
      addr: server.example:8080
      connector: {type: relay}
      dialer: {type: ws, tls: {serverName: server.example}}
""",
    ),
    (
        "f-wss",
        "gost -L relay+wss://:8443 -F relay+wss://server.example:8443",
        """
services:
- name: service-0
  addr: ":8443"
  handler: {type: relay, chain: chain-0}
  listener: {type: wss}
chains:
- name: chain-0
  hops:
  - name: hop-0
    nodes:
    - name: node-0
      addr: server.example:8443
      connector: {type: relay}
      dialer: {type: wss, tls: {serverName: server.example}}
""",
    ),
    (
        "f-kcp",
        "gost -L relay+kcp://:8388 -F relay+kcp://server.example:8388",
        """
services:
- name: service-0
  addr: ":8388"
  handler: {type: relay, chain: chain-0}
  listener: {type: kcp}
chains:
- name: chain-0
  hops:
  - name: hop-0
    nodes:
    - name: node-0
      addr: server.example:8388
      connector: {type: relay}
      dialer: {type: kcp, tls: {serverName: server.example}}
""",
    ),
    (
        "g",
        "gost -L :8080 -F relay://a.example:8420 -F relay+tls://b.example:8443",
        """
services:
- name: service-0
  addr: ":8080"
  handler: {type: auto, chain: chain-0}
  listener: {type: tcp}
chains:
- name: chain-0
  hops:
  - name: hop-0
    nodes:
    - name: node-0
      addr: a.example:8420
      connector: {type: relay}
      dialer: {type: tcp, tls: {serverName: a.example}}
  - name: hop-1
    nodes:
    - name: node-0
      addr: b.example:8443
      connector: {type: relay}
      dialer: {type: tls, tls: {serverName: b.example}}
""",
    ),
    (
        "h-hop",
        'gost -L ":8080" -F "relay://a.example:8420,b.example:8420?strategy=rand&maxFails=2&failTimeout=30s"',
        """
chains:
- name: chain-0
  hops:
  - name: hop-0
    selector: {strategy: rand, maxFails: 2, failTimeout: 30s}
    nodes:
    - name: node-0
      addr: a.example:8420
      connector: {type: relay}
      dialer: {type: tcp, tls: {serverName: "a.example:8420,b.example"}}
    - name: node-1
      addr: b.example:8420
      connector: {type: relay}
      dialer: {type: tcp, tls: {serverName: "a.example:8420,b.example"}}
""",
    ),
    (
        "h-forwarder",
        'gost -L "tcp://:2222/h1:22,h2:22?strategy=fifo" -F relay://server.example:8420',
        """
services:
- name: service-0
  addr: ":2222"
  handler: {type: tcp, chain: chain-0}
  listener: {type: tcp}
  forwarder:
    nodes:
    - {name: target-0, addr: "h1:22"}
    - {name: target-1, addr: "h2:22"}
    selector: {strategy: fifo, maxFails: 1, failTimeout: 30s}
""",
    ),
]


class SpecListingTests(SynchronousTestCase):
    """
    spec-relay.md 10.3: the CLI examples print their YAML equivalents.
    """

    def checkListing(self, cli: str, expectedText: str) -> dict[str, Any]:
        expected = yaml.safe_load(expectedText)
        built = viaBuilder(cli)
        printed = viaCommandLine(self, cli)
        self.assertEqual(printed, built, cli)
        problems = containmentProblems(expected, printed)
        self.assertEqual(problems, [], f"{cli}\n{yaml.safe_dump(printed, sort_keys=False)}")
        return printed  # type: ignore[no-any-return]

    def test_selectorKeysAreConsumed(self) -> None:
        """
        (h): the selector keys leave every metadata map.
        """
        printed = self.checkListing(*SPEC_LISTINGS[-2][1:])
        hop = printed["chains"][0]["hops"][0]
        for md in [hop.get("metadata") or {}] + [
            (node.get(part) or {}).get("metadata") or {} for node in hop["nodes"] for part in ("connector", "dialer")
        ] + [node.get("metadata") or {} for node in hop["nodes"]]:
            for key in ("strategy", "maxFails", "failTimeout"):
                self.assertNotIn(key, md)
        printed = self.checkListing(*SPEC_LISTINGS[-1][1:])
        svc = printed["services"][0]
        for md in (svc.get("metadata") or {}, svc["handler"].get("metadata") or {}, svc["listener"].get("metadata") or {}):
            self.assertNotIn("strategy", md)

    def test_jsonOutputMatchesYAML(self) -> None:
        """
        C{-O json} prints the same configuration as C{-O yaml}.
        """
        import json

        cli = SPEC_LISTINGS[1][1]
        args, _, _ = commandLine(cli)
        self.assertEqual(json.loads(runOutput(self, args, "json")), yaml.safe_load(runOutput(self, args, "yaml")))


def _addListingTests() -> None:
    for label, cli, text in SPEC_LISTINGS:

        def test(self: SpecListingTests, cli: str = cli, text: str = text) -> None:
            self.checkListing(cli, text)

        test.__name__ = "test_listing_" + label.replace("-", "_")
        test.__doc__ = f"spec-relay.md 10.3 ({label}): {cli}"
        setattr(SpecListingTests, test.__name__, test)


_addListingTests()
