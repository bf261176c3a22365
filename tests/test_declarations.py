"""
Tests for L{gostrelay.declarations}: an interface declaration worked out
once per kind of connection, in a bounded cache.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.interfaces import ITCPTransport, ITransport
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import directlyProvides, providedBy

from gostrelay import declarations


class Wrapper:
    def __init__(self) -> None:
        raise AssertionError("the probe is made without __init__")


class DeclarationForTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.patch(declarations, "_declarations", {})

    def test_onceAndAsDeclared(self) -> None:
        """
        The declaration is what C{declare} leaves on an instance, computed
        once per kind: later connections of that kind get the same object.
        """
        calls: list[Any] = []

        def declare(probe: Any) -> None:
            calls.append(probe)
            directlyProvides(probe, ITCPTransport)

        first = declarations.declarationFor(Wrapper, "tcp", declare)
        second = declarations.declarationFor(Wrapper, "tcp", declare)
        self.assertIs(first, second)
        self.assertEqual(len(calls), 1)
        instance: Any = object.__new__(Wrapper)
        instance.__provides__ = first
        self.assertTrue(ITCPTransport.providedBy(instance))
        self.assertTrue(ITransport.providedBy(instance))
        self.assertEqual(list(providedBy(instance)), list(providedBy(calls[0])))

    def test_nothingDeclared(self) -> None:
        self.assertIsNone(declarations.declarationFor(Wrapper, "none", lambda probe: None))

    def test_bounded(self) -> None:
        """
        Past L{declarations.MAX_KINDS} kinds the cache starts again: a
        process that meets kinds without end holds at most that many.
        """
        for kind in range(declarations.MAX_KINDS):
            declarations.declarationFor(Wrapper, kind, lambda probe: directlyProvides(probe, ITransport))
        self.assertEqual(len(declarations._declarations), declarations.MAX_KINDS)
        declarations.declarationFor(Wrapper, "one more", lambda probe: directlyProvides(probe, ITransport))
        self.assertEqual(len(declarations._declarations), 1)
