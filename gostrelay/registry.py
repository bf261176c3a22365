"""
Types by name, through L{twisted.plugin}.

This module is imported by the plugin files in C{twisted/plugins/}, so it
imports only zope.interface and L{gostrelay.interfaces}: discovering plugins
must stay cheap.
"""

from __future__ import annotations

from typing import Any, Callable

from twisted.plugin import IPlugin
from zope.interface import implementer

from gostrelay.interfaces import ITypePlugin

KINDS = ("handler", "listener", "connector", "dialer")


@implementer(IPlugin, ITypePlugin)
class TypePlugin:
    """
    A lazily imported factory: C{factoryName} is a dotted name resolved on
    first use.
    """

    def __init__(self, kind: str, name: str, factoryName: str, aliases: tuple[str, ...] = ()) -> None:
        if kind not in KINDS:
            raise ValueError(f"unknown plugin kind {kind!r}")
        self.kind = kind
        self.name = name
        self.aliases = aliases
        self.factoryName = factoryName

    def load(self) -> Callable[..., Any]:
        from twisted.python.reflect import namedAny

        return namedAny(self.factoryName)  # type: ignore[no-any-return]

    def __repr__(self) -> str:
        return f"<TypePlugin {self.kind} {self.name} -> {self.factoryName}>"


_cache: dict[tuple[str, str], ITypePlugin] | None = None


def _index() -> dict[tuple[str, str], ITypePlugin]:
    global _cache
    if _cache is None:
        from twisted.plugin import getPlugins

        index: dict[tuple[str, str], ITypePlugin] = {}
        for plugin in getPlugins(ITypePlugin):
            for name in (plugin.name, *plugin.aliases):
                index.setdefault((plugin.kind, name), plugin)
        _cache = index
    return _cache


def lookup(kind: str, name: str) -> ITypePlugin | None:
    """
    The plugin implementing C{kind} C{name}, or C{None} when no installed
    plugin does.
    """
    return _index().get((kind, name))


def implemented(kind: str) -> list[str]:
    return sorted(name for (k, name) in _index() if k == kind)


def register(plugin: ITypePlugin) -> None:
    """
    Add a type at run time (for embedding programs and tests that do not
    ship a plugin file).
    """
    index = _index()
    for name in (plugin.name, *plugin.aliases):
        index[(plugin.kind, name)] = plugin
