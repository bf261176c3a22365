"""
Types by name, through L{twisted.plugin}.

This module is imported by the plugin files in C{twisted/plugins/}, so it
imports only zope.interface and L{gostrelay.interfaces}: discovering plugins
must stay cheap.

An install that maps the package through an import hook (a package
copied or vendored alone, an editable install without setup.cfg's
C{package_dir}) leaves the source
tree's C{twisted/plugins} directory on no C{sys.path} entry, and
L{twisted.plugin} would find none of our plugin files. L{ensureOwnPlugins}
adds that directory to C{twisted.plugins.__path__} when it sits next to the
package, so our types and endpoint prefixes are found however the package
was installed once our code runs. (twistd lists its commands before that:
setup.cfg's C{package_dir} keeps the default C{pip install -e .} a plain
path entry, so C{twistd relay} is found there too.)
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

    def __init__(
        self,
        kind: str,
        name: str,
        factoryName: str,
        aliases: tuple[str, ...] = (),
        options: dict[str, str] | None = None,
    ) -> None:
        if kind not in KINDS:
            raise ValueError(f"unknown plugin kind {kind!r}")
        self.kind = kind
        self.name = name
        self.aliases = aliases
        self.factoryName = factoryName
        #: The metadata keys the type reads, each with its kind of value
        #: (L{OPTION_KINDS}); C{None}: not declared (nothing is checked).
        self.options = options

    def load(self) -> Callable[..., Any]:
        from twisted.python.reflect import namedAny

        return namedAny(self.factoryName)  # type: ignore[no-any-return]

    def __repr__(self) -> str:
        return f"<TypePlugin {self.kind} {self.name} -> {self.factoryName}>"


#: The kinds of option values, checked when a configuration is built.
OPTION_KINDS = ("string", "bool", "int", "float", "duration", "any")

#: Our plugin files, by which L{ensureOwnPlugins} recognises their directory.
OWN_PLUGIN_FILES = ("gostrelay_types.py", "gostrelay_twistd.py")

_cache: dict[tuple[str, str], ITypePlugin] | None = None


class PluginsMissing(Exception):
    """
    gostrelay's plugin files cannot be found: the message says why and what
    to do.
    """


def ensureOwnPlugins() -> None:
    """
    Make sure L{twisted.plugin} sees gostrelay's own plugin files: when no
    directory of C{twisted.plugins.__path__} holds them (an editable
    install), add the source tree's C{twisted/plugins}, found next to the
    package.

    @raise PluginsMissing: when they are nowhere to be found.
    """
    import os

    import twisted.plugins

    paths = list(twisted.plugins.__path__)
    for path in paths:
        if os.path.isfile(os.path.join(path, OWN_PLUGIN_FILES[0])):
            return
    import gostrelay

    tree = os.path.dirname(os.path.dirname(os.path.abspath(gostrelay.__file__)))
    candidate = os.path.join(tree, "twisted", "plugins")
    if os.path.isfile(os.path.join(candidate, OWN_PLUGIN_FILES[0])):
        twisted.plugins.__path__.append(candidate)
        return
    raise PluginsMissing(
        "gostrelay's plugin files (twisted/plugins/gostrelay_*.py) are not installed: "
        "install the project with 'pip install .' or 'pip install -e .' "
        "rather than copying the package alone"
    )


def _index() -> dict[tuple[str, str], ITypePlugin]:
    global _cache
    if _cache is None:
        from twisted.plugin import getPlugins

        ensureOwnPlugins()

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


def forget() -> None:
    """
    Forget what discovery found (for tests that add a plugin package to
    C{sys.path}).
    """
    global _cache
    _cache = None


def register(plugin: ITypePlugin) -> None:
    """
    Add a type at run time (for embedding programs and tests that do not
    ship a plugin file).
    """
    index = _index()
    for name in (plugin.name, *plugin.aliases):
        index[(plugin.kind, name)] = plugin
