"""
Node selection and failure marking (spec-relay.md section 8), shared by
forwarders (C{tcp://:2222/a:22,b:22}, relay forward mode) and chain hops
(C{-F relay://a:8420,b:8420}).

A node that failed C{maxFails} times is left out for C{failTimeout}; a
success resets it.  Strategies are GOST's: round robin, weighted random,
first-available and hash.  The clock is injected, so tests move time with
L{twisted.internet.task.Clock}.
"""

from __future__ import annotations

import random
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from twisted.internet.interfaces import IReactorTime

from gostrelay.config.metadata import Metadata
from gostrelay.config.model import ConfigError, SelectorConfig

ROUND = "round"
RANDOM = "random"
FIFO = "fifo"
HASH = "hash"

#: Every strategy name GOST accepts, mapped to ours; C{None} marks the ones
#: GOST has and we do not implement (refused at start).
STRATEGIES: dict[str, str | None] = {
    "round": ROUND,
    "rr": ROUND,
    "random": RANDOM,
    "rand": RANDOM,
    "fifo": FIFO,
    "ha": FIFO,
    "hash": HASH,
    "parallel": None,
    "lowestlatency": None,
    "lowest": None,
    "ll": None,
}

DEFAULT_MAX_FAILS = 1
DEFAULT_FAIL_TIMEOUT = 10.0


def strategyName(name: str, where: str) -> str:
    """
    Our name for GOST strategy C{name}.  An empty name is round robin, a
    name GOST does not know falls back to round robin as in GOST; one GOST
    knows and we do not implement is a L{ConfigError}.
    """
    key = (name or ROUND).lower()
    if key not in STRATEGIES:
        return ROUND
    ours = STRATEGIES[key]
    if ours is None:
        raise ConfigError(f"{where}: selector strategy {name!r} is not implemented")
    return ours


@dataclass(eq=False)
class Node:
    """
    One selectable thing (a forward target or a chain node) and its failure
    marker.
    """

    name: str
    addr: str
    metadata: Metadata = field(default_factory=Metadata)
    value: Any = None
    failures: int = 0
    lastFailure: float = 0.0

    @property
    def weight(self) -> int:
        weight = self.metadata.getInt("weight")
        return weight if weight > 0 else 1

    @property
    def backup(self) -> bool:
        return self.metadata.getBool("backup")


class Selector:
    """
    Picks one of a group's nodes and remembers which ones failed.
    """

    def __init__(
        self,
        nodes: Sequence[Node],
        clock: IReactorTime,
        strategy: str = ROUND,
        maxFails: int = DEFAULT_MAX_FAILS,
        failTimeout: float = DEFAULT_FAIL_TIMEOUT,
        rng: random.Random | None = None,
    ) -> None:
        self.nodes = list(nodes)
        self.clock = clock
        self.strategy = strategy
        self.maxFails = maxFails if maxFails > 0 else DEFAULT_MAX_FAILS
        self.failTimeout = failTimeout if failTimeout > 0 else DEFAULT_FAIL_TIMEOUT
        self._counter = 0
        self._random = rng or random.Random()

    @classmethod
    def fromConfig(
        cls, nodes: Sequence[Node], config: SelectorConfig | None, clock: IReactorTime, where: str
    ) -> Selector:
        if config is None:
            return cls(nodes, clock)
        return cls(
            nodes,
            clock,
            strategyName(config.strategy, where),
            config.maxFails,
            config.failTimeout,
        )

    def _failed(self, node: Node) -> bool:
        maxFails = node.metadata.getInt("maxFails") or self.maxFails
        failTimeout = node.metadata.getDuration("failTimeout") or self.failTimeout
        # GOST stamps failures with a 1 s resolution.
        return node.failures >= maxFails and int(self.clock.seconds()) - int(node.lastFailure) < failTimeout

    def select(self, hashKey: str | None = None) -> Node | None:
        """
        The node to use next, or C{None} when the group is empty.

        @param hashKey: for the hash strategy: the client ID (authenticated
            user), else the client IP (or the target, with C{hash=host}).
        """
        if not self.nodes:
            return None
        if len(self.nodes) == 1:
            return self.nodes[0]
        candidates = [n for n in self.nodes if not self._failed(n)]
        if not candidates:
            # Last resort, as GOST: the first node, failed or not.
            return self.nodes[0]
        primary = [n for n in candidates if not n.backup]
        if primary:
            candidates = primary
        return self._apply(candidates, hashKey)

    def _apply(self, candidates: list[Node], hashKey: str | None) -> Node:
        if self.strategy == FIFO:
            return candidates[0]
        if self.strategy == RANDOM:
            weights = [n.weight for n in candidates]
            return self._random.choices(candidates, weights)[0]
        if self.strategy == HASH and hashKey:
            return candidates[zlib.crc32(hashKey.encode("utf-8", "surrogateescape")) % len(candidates)]
        if self.strategy == HASH:
            return self._random.choice(candidates)
        node = candidates[self._counter % len(candidates)]
        self._counter += 1
        return node

    def markFailed(self, node: Node) -> None:
        node.failures += 1
        node.lastFailure = self.clock.seconds()

    def markSucceeded(self, node: Node) -> None:
        node.failures = 0
