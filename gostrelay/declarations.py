"""
Interface declarations worked out once per kind of connection.

A wrapper that takes over its transport's interfaces (Twisted's TLS
protocol, our relay and proxy connectors) calls C{directlyProvides} on every
connection, and zope normalises its arguments each time: a measurable part
of a short connection's CPU (issue 20).  The result depends only on the
wrapper's class and its transport's declaration, so L{declarationFor}
computes it once on a probe instance and hands the same declaration to
every later connection of that kind.
"""

from __future__ import annotations

from typing import Any, Callable

#: The most kinds kept; a process meets a handful (one per carrier type).
MAX_KINDS = 256

_declarations: dict[Any, Any] = {}


def declarationFor(cls: type, key: Any, declare: Callable[[Any], None]) -> Any:
    """
    The C{__provides__} that C{declare(instance)} leaves on an instance of
    C{cls}, for the kind of connection C{key} names (with C{cls}); the
    declaration is computed once per kind, on a probe made without
    C{__init__}.  C{None} if C{declare} declares nothing.
    """
    full = (cls, key)
    declaration = _declarations.get(full)
    if declaration is None:
        if len(_declarations) >= MAX_KINDS:
            _declarations.clear()
        probe: Any = object.__new__(cls)
        declare(probe)
        declaration = _declarations[full] = probe.__dict__.get("__provides__")
    return declaration
