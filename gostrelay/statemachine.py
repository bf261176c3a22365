"""
Explicit state machines at the cost of a dict lookup.

A protocol whose life has phases names them in an C{enum} and declares, in
one L{TransitionTable}, what each event does in each state: the next state
and the action to run.  Its Twisted methods then only hand events over
(C{self._fire("lost", reason)}), and what it does in a state is read in one
place instead of being spread over flags and if-chains.

Twisted's own C{ClientService} is an automat machine.  Ours are not: automat
finds a transition by scanning its whole table with a Python-level
comparison per entry (C{automat._core.Automaton.outputForInput}), 5-8 us an
event at 40 transitions, which tripled the relay client's own work per
connection (docs/benchmarks.md); here a transition is one dict lookup.  The
semantics differ in one more way, on purpose: an event fired while an
action runs (the application writing from its C{connectionMade} while it is
handed the connection) runs at once, in the state the machine has just
entered, as the protocols did before they had a table; automat would queue
it until the action returns.
"""

from __future__ import annotations

import enum
from typing import Any, Callable, Generic, Iterable, TypeVar

S = TypeVar("S", bound=enum.Enum)


class UnexpectedEvent(RuntimeError):
    """
    An event happened in a state whose table says nothing about it: a bug in
    the table (the tests drive every sequence of events to find them).
    """


class TransitionTable(Generic[S]):
    """
    What each event does in each state: C{(state, event) -> (next state,
    action)}.  The subject (the protocol) keeps its current state in its
    C{state} attribute; an action is called with the subject and the event's
    arguments, after the state changed.
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self.transitions: dict[tuple[S, str], tuple[S, Callable[..., None]]] = {}

    def upon(self, *states: S, event: str, to: S | None = None) -> Callable[[Callable[..., None]], Callable[..., None]]:
        """
        Declare what C{event} does in each of C{states}: go C{to} (else
        stay) and run the decorated action.
        """

        def declare(action: Callable[..., None]) -> Callable[..., None]:
            for state in states:
                if (state, event) in self.transitions:
                    raise ValueError(f"{self.name}: {event!r} in {state.name} declared twice")
                self.transitions[(state, event)] = (state if to is None else to, action)
            return action

        return declare

    def fire(self, subject: Any, event: str, *args: Any) -> None:
        """
        Run C{event}'s transition for C{subject} in its current state.

        @raise UnexpectedEvent: when the table has none.
        """
        try:
            state, action = self.transitions[(subject.state, event)]
        except KeyError:
            raise UnexpectedEvent(f"{self.name}: {event!r} in {subject.state.name}") from None
        subject.state = state
        action(subject, *args)

    def events(self) -> set[str]:
        return {event for _state, event in self.transitions}

    def undeclared(self, states: Iterable[S], events: Iterable[str]) -> list[tuple[S, str]]:
        """
        The pairs of C{states} and C{events} the table says nothing about
        (for tests that a state answers every event it can meet).
        """
        events = list(events)
        return [(state, event) for state in states for event in events if (state, event) not in self.transitions]
