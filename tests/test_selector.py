"""
Tests for L{gostrelay.selector}: node selection and failure marking
(spec-relay.md section 8).
"""

from __future__ import annotations

import random
import zlib
from collections import Counter

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from gostrelay.config.metadata import Metadata
from gostrelay.config.model import ConfigError, SelectorConfig
from gostrelay.selector import (
    DEFAULT_FAIL_TIMEOUT,
    FIFO,
    HASH,
    RANDOM,
    ROUND,
    Node,
    Selector,
    strategyName,
)


def makeNodes(count: int, **metadata: dict) -> list[Node]:
    """
    C{count} nodes C{n0..}, at C{10.0.0.<i>:80}; C{metadata} maps a node
    name to that node's metadata.
    """
    return [Node(f"n{i}", f"10.0.0.{i}:80", Metadata(metadata.get(f"n{i}", {}))) for i in range(count)]


def names(nodes: list[Node | None]) -> list[str | None]:
    return [n.name if n is not None else None for n in nodes]


class StrategyNameTests(SynchronousTestCase):
    """
    GOST's strategy names map to ours; the ones we lack are refused.
    """

    def test_canonicalNames(self) -> None:
        """
        The four implemented strategies keep their names.
        """
        for name in (ROUND, RANDOM, FIFO, HASH):
            self.assertEqual(strategyName(name, "here"), name)

    def test_aliases(self) -> None:
        """
        GOST's short names (C{rr}, C{rand}, C{ha}) are the same strategies,
        case-insensitively.
        """
        self.assertEqual(strategyName("rr", "here"), ROUND)
        self.assertEqual(strategyName("rand", "here"), RANDOM)
        self.assertEqual(strategyName("ha", "here"), FIFO)
        self.assertEqual(strategyName("RR", "here"), ROUND)
        self.assertEqual(strategyName("Hash", "here"), HASH)

    def test_emptyIsRound(self) -> None:
        """
        No strategy is round robin, GOST's default.
        """
        self.assertEqual(strategyName("", "here"), ROUND)

    def test_unknownIsRound(self) -> None:
        """
        A name GOST does not know falls back to round robin, as in GOST,
        rather than refusing the configuration.
        """
        self.assertEqual(strategyName("bogus", "here"), ROUND)

    def test_unimplementedRefused(self) -> None:
        """
        Strategies GOST has and we do not (parallel, lowest latency) are a
        L{ConfigError} naming the place, so they are refused at start.
        """
        for name in ("parallel", "lowest", "lowestlatency", "ll"):
            e = self.assertRaises(ConfigError, strategyName, name, "svc.forwarder")
            self.assertIn("svc.forwarder", str(e))
            self.assertIn(name, str(e))


class RoundRobinTests(SynchronousTestCase):
    """
    The default strategy cycles over the candidates.
    """

    def test_order(self) -> None:
        """
        Nodes come in list order and wrap around.
        """
        selector = Selector(makeNodes(3), Clock())
        self.assertEqual(
            names([selector.select() for _ in range(7)]),
            ["n0", "n1", "n2", "n0", "n1", "n2", "n0"],
        )

    def test_emptyGroup(self) -> None:
        """
        An empty group selects nothing (the handler answers 0x05).
        """
        self.assertIsNone(Selector([], Clock()).select())

    def test_singleNodeAlways(self) -> None:
        """
        A group of one returns its node even while it is marked failed
        (spec 8 step 3).
        """
        clock = Clock()
        nodes = makeNodes(1)
        selector = Selector(nodes, clock)
        selector.markFailed(nodes[0])
        selector.markFailed(nodes[0])
        self.assertIs(selector.select(), nodes[0])
        self.assertIs(selector.select(), nodes[0])

    def test_defaults(self) -> None:
        """
        Non-positive maxFails/failTimeout mean GOST's YAML defaults (1, 10 s).
        """
        selector = Selector(makeNodes(2), Clock(), maxFails=0, failTimeout=-1)
        self.assertEqual(selector.maxFails, 1)
        self.assertEqual(selector.failTimeout, DEFAULT_FAIL_TIMEOUT)
        self.assertEqual(DEFAULT_FAIL_TIMEOUT, 10.0)


class FifoTests(SynchronousTestCase):
    """
    fifo (ha) sticks to the first candidate until it fails.
    """

    def test_sticky(self) -> None:
        """
        Without failures the first node is always chosen.
        """
        selector = Selector(makeNodes(3), Clock(), FIFO)
        self.assertEqual(names([selector.select() for _ in range(4)]), ["n0"] * 4)

    def test_movesOnFailure(self) -> None:
        """
        Once the first node is failed the next one is chosen, and the
        first is back after the fail timeout.
        """
        clock = Clock()
        nodes = makeNodes(3)
        selector = Selector(nodes, clock, FIFO, maxFails=1, failTimeout=5)
        selector.markFailed(nodes[0])
        self.assertEqual(names([selector.select() for _ in range(3)]), ["n1"] * 3)
        selector.markFailed(nodes[1])
        self.assertEqual(selector.select(), nodes[2])
        clock.advance(5)
        self.assertEqual(selector.select(), nodes[0])


class FailureMarkingTests(SynchronousTestCase):
    """
    maxFails / failTimeout accounting (spec 8, "Failure accounting").
    """

    def setUp(self) -> None:
        self.clock = Clock()
        self.nodes = makeNodes(2)

    def test_failedNodeSkipped(self) -> None:
        """
        A node failed C{maxFails} times is not a candidate.
        """
        selector = Selector(self.nodes, self.clock, maxFails=1, failTimeout=30)
        selector.markFailed(self.nodes[0])
        self.assertEqual(names([selector.select() for _ in range(4)]), ["n1"] * 4)

    def test_belowMaxFailsStillUsed(self) -> None:
        """
        Fewer than C{maxFails} failures do not exclude a node.
        """
        selector = Selector(self.nodes, self.clock, FIFO, maxFails=3, failTimeout=30)
        selector.markFailed(self.nodes[0])
        selector.markFailed(self.nodes[0])
        self.assertIs(selector.select(), self.nodes[0])
        selector.markFailed(self.nodes[0])
        self.assertIs(selector.select(), self.nodes[1])

    def test_backAfterFailTimeout(self) -> None:
        """
        A failed node is a candidate again once C{failTimeout} has passed
        since its last failure, not before.
        """
        selector = Selector(self.nodes, self.clock, FIFO, maxFails=1, failTimeout=30)
        selector.markFailed(self.nodes[0])
        self.clock.advance(29)
        self.assertIs(selector.select(), self.nodes[1])
        self.clock.advance(1)
        self.assertIs(selector.select(), self.nodes[0])

    def test_lastFailureCounts(self) -> None:
        """
        The timeout runs from the latest failure.
        """
        selector = Selector(self.nodes, self.clock, FIFO, maxFails=1, failTimeout=10)
        selector.markFailed(self.nodes[0])
        self.clock.advance(8)
        selector.markFailed(self.nodes[0])
        self.clock.advance(8)
        self.assertIs(selector.select(), self.nodes[1])
        self.clock.advance(2)
        self.assertIs(selector.select(), self.nodes[0])

    def test_successResets(self) -> None:
        """
        A success resets the failure counter at once.
        """
        selector = Selector(self.nodes, self.clock, FIFO, maxFails=1, failTimeout=30)
        selector.markFailed(self.nodes[0])
        self.assertIs(selector.select(), self.nodes[1])
        selector.markSucceeded(self.nodes[0])
        self.assertEqual(self.nodes[0].failures, 0)
        self.assertIs(selector.select(), self.nodes[0])

    def test_successResetsCount(self) -> None:
        """
        After a success the node needs C{maxFails} new failures to be
        excluded.
        """
        selector = Selector(self.nodes, self.clock, FIFO, maxFails=2, failTimeout=30)
        selector.markFailed(self.nodes[0])
        selector.markSucceeded(self.nodes[0])
        selector.markFailed(self.nodes[0])
        self.assertIs(selector.select(), self.nodes[0])

    def test_markFailedStampsClock(self) -> None:
        """
        The failure time is the injected clock's.
        """
        selector = Selector(self.nodes, self.clock)
        self.clock.advance(42.5)
        selector.markFailed(self.nodes[1])
        self.assertEqual(self.nodes[1].failures, 1)
        self.assertEqual(self.nodes[1].lastFailure, 42.5)

    def test_allFailedLastResort(self) -> None:
        """
        When every node is failed the first one is returned, failed or not.
        """
        nodes = makeNodes(3)
        selector = Selector(nodes, self.clock, maxFails=1, failTimeout=30)
        for node in reversed(nodes):
            selector.markFailed(node)
        self.assertEqual(names([selector.select() for _ in range(3)]), ["n0"] * 3)

    def test_perNodeOverrides(self) -> None:
        """
        Node metadata C{maxFails} / C{failTimeout} override the selector's.
        """
        nodes = makeNodes(3, n0={"maxFails": 2}, n1={"failTimeout": "5s"})
        selector = Selector(nodes, self.clock, FIFO, maxFails=1, failTimeout=30)
        selector.markFailed(nodes[0])
        self.assertIs(selector.select(), nodes[0])
        selector.markFailed(nodes[0])
        self.assertIs(selector.select(), nodes[1])
        selector.markFailed(nodes[1])
        self.assertIs(selector.select(), nodes[2])
        self.clock.advance(5)
        self.assertIs(selector.select(), nodes[1])


class BackupTests(SynchronousTestCase):
    """
    Nodes with C{backup: true} are used only when no primary is a
    candidate.
    """

    def test_backupUnusedWhilePrimaryAvailable(self) -> None:
        """
        Round robin never lands on a backup node while a primary is usable.
        """
        nodes = makeNodes(3, n0={"backup": True})
        selector = Selector(nodes, Clock())
        self.assertEqual(names([selector.select() for _ in range(4)]), ["n1", "n2", "n1", "n2"])

    def test_backupWhenPrimariesFailed(self) -> None:
        """
        With every primary failed, the backup node is chosen (not the last
        resort first node).
        """
        clock = Clock()
        nodes = makeNodes(3, n2={"backup": "true"})
        selector = Selector(nodes, clock, maxFails=1, failTimeout=30)
        selector.markFailed(nodes[0])
        selector.markFailed(nodes[1])
        self.assertEqual(names([selector.select() for _ in range(3)]), ["n2"] * 3)
        clock.advance(30)
        self.assertNotIn("n2", names([selector.select() for _ in range(4)]))


class RandomTests(SynchronousTestCase):
    """
    Weighted random selection.
    """

    def assertNear(self, share: float, expected: float, tolerance: float = 0.03) -> None:
        # trial's assertAlmostEqual has no delta argument.
        self.assertTrue(
            abs(share - expected) <= tolerance, f"{share} is not within {tolerance} of {expected}"
        )

    def test_weightsRespected(self) -> None:
        """
        Over many draws the share of each node follows its weight.
        """
        nodes = makeNodes(2, n0={"weight": 3}, n1={"weight": "1"})
        selector = Selector(nodes, Clock(), RANDOM, rng=random.Random(1234))
        counts = Counter(names([selector.select() for _ in range(8000)]))
        self.assertNear(counts["n0"] / 8000, 0.75)
        self.assertNear(counts["n1"] / 8000, 0.25)

    def test_nonPositiveWeightIsOne(self) -> None:
        """
        A weight of 0 (or less, or missing) counts as 1: such a node is
        still chosen, as often as a weight-1 node.
        """
        nodes = makeNodes(3, n0={"weight": 0}, n1={"weight": -5})
        self.assertEqual([n.weight for n in nodes], [1, 1, 1])
        selector = Selector(nodes, Clock(), RANDOM, rng=random.Random(99))
        counts = Counter(names([selector.select() for _ in range(9000)]))
        for name in ("n0", "n1", "n2"):
            self.assertNear(counts[name] / 9000, 1 / 3)

    def test_failedExcluded(self) -> None:
        """
        Random selection draws from candidates only.
        """
        nodes = makeNodes(3)
        selector = Selector(nodes, Clock(), RANDOM, rng=random.Random(5))
        selector.markFailed(nodes[1])
        self.assertNotIn("n1", names([selector.select() for _ in range(300)]))

    def test_seededIsReproducible(self) -> None:
        """
        The injected generator makes the sequence reproducible.
        """

        def draw() -> list[str | None]:
            selector = Selector(makeNodes(4), Clock(), RANDOM, rng=random.Random(7))
            return names([selector.select() for _ in range(50)])

        self.assertEqual(draw(), draw())


class HashTests(SynchronousTestCase):
    """
    The hash strategy: C{crc32(key) % n} over the candidates.
    """

    def test_crc32Modulo(self) -> None:
        """
        The node index is the CRC-32 of the key modulo the candidate count,
        the same on every call.
        """
        nodes = makeNodes(5)
        selector = Selector(nodes, Clock(), HASH)
        for key in ("alice", "bob", "192.168.1.10", "example.com:443", "ü"):
            expected = nodes[zlib.crc32(key.encode("utf-8")) % 5]
            self.assertIs(selector.select(key), expected)
            self.assertIs(selector.select(key), expected)

    def test_knownValue(self) -> None:
        """
        A literal check against the standard CRC-32 (0xCBF43926 for
        C{"123456789"}), so the test cannot share a mistake with the code.
        """
        nodes = makeNodes(7)
        selector = Selector(nodes, Clock(), HASH)
        self.assertIs(selector.select("123456789"), nodes[0xCBF43926 % 7])

    def test_overCandidates(self) -> None:
        """
        Failed nodes are left out before hashing.
        """
        nodes = makeNodes(3)
        selector = Selector(nodes, Clock(), HASH)
        selector.markFailed(nodes[0])
        key = "carol"
        self.assertIs(selector.select(key), nodes[1:][zlib.crc32(key.encode()) % 2])

    def test_noKeyRandom(self) -> None:
        """
        Without a key, hash falls back to (seeded) random choice.
        """
        nodes = makeNodes(3)
        selector = Selector(nodes, Clock(), HASH, rng=random.Random(3))
        picked = set(names([selector.select() for _ in range(200)]))
        self.assertEqual(picked, {"n0", "n1", "n2"})


class FromConfigTests(SynchronousTestCase):
    """
    L{Selector.fromConfig} applies a selector section.
    """

    def test_noConfig(self) -> None:
        """
        No section: round robin, maxFails 1, failTimeout 10 s.
        """
        selector = Selector.fromConfig(makeNodes(2), None, Clock(), "here")
        self.assertEqual((selector.strategy, selector.maxFails, selector.failTimeout), (ROUND, 1, 10.0))

    def test_config(self) -> None:
        """
        The section's values are used, strategy aliases resolved.
        """
        config = SelectorConfig(strategy="ha", maxFails=3, failTimeout=30.0)
        selector = Selector.fromConfig(makeNodes(2), config, Clock(), "here")
        self.assertEqual((selector.strategy, selector.maxFails, selector.failTimeout), (FIFO, 3, 30.0))

    def test_unimplementedStrategy(self) -> None:
        """
        An unimplemented strategy in the section is a L{ConfigError}.
        """
        config = SelectorConfig(strategy="parallel")
        self.assertRaises(ConfigError, Selector.fromConfig, makeNodes(2), config, Clock(), "here")
