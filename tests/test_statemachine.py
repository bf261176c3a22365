"""
Tests for L{gostrelay.statemachine}: the transition tables of the relay
client and the proxy hops.
"""

from __future__ import annotations

import enum

from twisted.trial.unittest import SynchronousTestCase

from gostrelay.statemachine import TransitionTable, UnexpectedEvent


class Door(enum.Enum):
    SHUT = "shut"
    OPEN = "open"


class Subject:
    def __init__(self) -> None:
        self.state = Door.SHUT
        self.seen: list[tuple[Door, str]] = []


class TransitionTableTests(SynchronousTestCase):
    def table(self) -> TransitionTable[Door]:
        table: TransitionTable[Door] = TransitionTable("door")

        @table.upon(Door.SHUT, event="push", to=Door.OPEN)
        def push(subject: Subject, who: str) -> None:
            subject.seen.append((subject.state, who))

        @table.upon(Door.OPEN, event="knock")
        def knock(subject: Subject, who: str) -> None:
            subject.seen.append((subject.state, who))

        return table

    def test_fire(self) -> None:
        """
        An event moves the subject to the declared state, then runs the
        action with the event's arguments (it sees the new state); an event
        without C{to} leaves the state as it is.
        """
        table, subject = self.table(), Subject()
        table.fire(subject, "push", "alice")
        table.fire(subject, "knock", "bob")
        self.assertEqual(subject.state, Door.OPEN)
        self.assertEqual(subject.seen, [(Door.OPEN, "alice"), (Door.OPEN, "bob")])

    def test_unexpected(self) -> None:
        table, subject = self.table(), Subject()
        e = self.assertRaises(UnexpectedEvent, table.fire, subject, "knock", "bob")
        self.assertEqual(str(e), "door: 'knock' in SHUT")
        self.assertEqual(subject.state, Door.SHUT)

    def test_declaredTwice(self) -> None:
        table = self.table()
        self.assertRaises(ValueError, table.upon(Door.SHUT, event="push"), lambda subject, who: None)

    def test_undeclared(self) -> None:
        table = self.table()
        self.assertEqual(table.events(), {"push", "knock"})
        self.assertEqual(table.undeclared(Door, table.events()), [(Door.SHUT, "knock"), (Door.OPEN, "push")])
