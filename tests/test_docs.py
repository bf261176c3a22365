"""
The docs cannot drift from the command line: every fenced command line in
docs/ (every page, however many are added) and README.md that starts
C{gostrelay} or C{twistd} is run here as a dry run: the real option parser,
configuration loader and service builder, on a memory reactor (nothing
listens, nothing is dialed; C{-O}, C{-V} and C{--help} lines run as they
are).

A line may fail only as its fence shows: when the lines after it in the
same fence are the C{gostrelay: ...} problems it prints, it must print
exactly those.  A problem that is only a missing file the line names (a
certificate, a C{-C} file the reader writes) is accepted.

A line with placeholders that cannot run (C{<port>}, C{[options]}) opts
out with a visible marker: a shell comment at its end with the word
C{placeholders} (L{MARKER})::

    gostrelay -L relay://:<port>      # placeholders: <port>

Lines are taken as a shell would: a C{$ } prompt, C{sudo} and C{VAR=value}
prefixes are dropped, backslash continuations joined, and the command ends
at the first shell operator (C{|}, C{&}, C{;}, C{>}, C{<}...).
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import shlex
import sys
from collections.abc import Iterator
from typing import Any

from twisted.internet.testing import MemoryReactorClock
from twisted.python import usage
from twisted.trial.unittest import SynchronousTestCase

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

#: The shell comment that opts a line with placeholders out of the check.
MARKER = "# ... placeholders"
_MARKER = re.compile(r"#.*\bplaceholders\b")

_FENCE = re.compile(r"^\s*(```+|~~~+)")
_OPERATORS = {"|", "||", "&", "&&", ";", ";;", ">", ">>", "<", "<<", "<<<", "(", ")", ">&", "<&", "|&"}
_PROGRAMS = ("gostrelay", "twistd")


def docFiles() -> list[str]:
    """
    README.md and every Markdown page under docs/, sorted.
    """
    files = [os.path.join(ROOT, "README.md")]
    for directory, _subdirectories, names in os.walk(os.path.join(ROOT, "docs")):
        files.extend(os.path.join(directory, name) for name in names if name.endswith(".md"))
    return sorted(f for f in files if os.path.exists(f))


def fencedLines(path: str) -> Iterator[tuple[int, str]]:
    """
    C{(line number, logical line)} for every line inside a fenced block of
    C{path}; backslash continuations are joined and numbered by their first
    line.
    """
    for number, line, _after in fencedLinesWithOutput(path):
        yield number, line


def fencedLinesWithOutput(path: str) -> Iterator[tuple[int, str, list[str]]]:
    """
    L{fencedLines}, each with the lines after it in its fence (what the
    docs show it printing).
    """
    with open(path, encoding="utf-8") as f:
        lines = f.read().splitlines()
    fence: str | None = None
    pending = ""
    start = 0
    block: list[tuple[int, str]] = []
    for number, line in enumerate(lines, 1):
        m = _FENCE.match(line)
        if fence is None:
            if m:
                fence = m.group(1)
                block = []
            continue
        if m and line.strip().startswith(fence[0] * len(fence)) and not line.strip().strip(fence[0]):
            fence = None
            pending = ""
            for i, (first, logical) in enumerate(block):
                yield first, logical, [text for _, text in block[i + 1 :]]
            continue
        if not pending:
            start = number
        if line.rstrip().endswith("\\") and not line.rstrip().endswith("\\\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        block.append((start, pending + line))
        pending = ""


def commandArguments(line: str) -> tuple[str, list[str]] | None:
    """
    C{(program, arguments)} when C{line} runs gostrelay or twistd, else
    C{None}.  Raises L{ValueError} for a line the shell could not split.
    """
    text = line.strip()
    if text.startswith("$ "):
        text = text[2:]
    lexer = shlex.shlex(text, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    lexer.commenters = "#"
    tokens = list(lexer)
    while tokens and (tokens[0] in ("sudo", "exec", "env") or re.match(r"^[A-Za-z_][A-Za-z0-9_]*=", tokens[0])):
        tokens.pop(0)
    if tokens[:3] in (["python3", "-m", "gostrelay"], ["python", "-m", "gostrelay"]):
        tokens[:3] = ["gostrelay"]
    if not tokens or os.path.basename(tokens[0]) not in _PROGRAMS:
        return None
    program = os.path.basename(tokens[0])
    arguments: list[str] = []
    rest = tokens[1:]
    for i, token in enumerate(rest):
        if token in _OPERATORS or re.match(r"^[<>|&;]+$", token):
            break
        if token.isdigit() and i + 1 < len(rest) and rest[i + 1][:1] in "<>":
            break  # 2>&1, 2>/dev/null
        arguments.append(token)
    if arguments and not (arguments[0].startswith("-") or (program == "twistd" and arguments[0] == "relay")):
        # Neither takes a first word that is not an option: this is output
        # (C{gostrelay 0.1.0 (Twisted ...)}), not a command.
        return None
    return program, arguments


class _Exited(Exception):
    def __init__(self, code: Any) -> None:
        self.code = code


@contextlib.contextmanager
def _isolated(home: str) -> Iterator[tuple[io.StringIO, io.StringIO]]:
    """
    Standard streams captured (standard input empty), C{HOME} elsewhere
    (a TLS listener without a certificate writes one there), and the log
    configuration the option parser sets restored afterwards.
    """
    from gostrelay import logs

    saved = {name: getattr(logs, name) for name in ("TRACE", "_level", "_stream", "_path")}
    out, err = io.StringIO(), io.StringIO()
    stdin = sys.stdin
    sys.stdin = io.StringIO("")
    oldHome = os.environ.get("HOME")
    os.environ["HOME"] = home
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            yield out, err
    finally:
        sys.stdin = stdin
        if oldHome is None:
            del os.environ["HOME"]
        else:
            os.environ["HOME"] = oldHome
        for name, value in saved.items():
            setattr(logs, name, value)


def dryRun(program: str, arguments: list[str], home: str) -> list[str] | None:
    """
    Run a documented command up to the point where it would listen:
    C{None} when it gets there (or exits 0, as C{-O}, C{-V} and C{--help}
    do), else its problems, one per line, as it prints them.
    """
    from gostrelay.build import RefusedConfiguration, buildServices
    from gostrelay.config.model import ConfigError
    from gostrelay.tap import Options, makeService

    with _isolated(home) as (_out, err):
        try:
            if program == "twistd":
                from twisted.scripts.twistd import ServerOptions

                config = ServerOptions()
                config.parseOptions(arguments)
                if config.subCommand != "relay":
                    return None  # another twistd plugin: not ours to check
                options = config.subOptions
            else:
                options = Options()
                options.parseOptions(arguments)
            if options["output"]:
                makeService(options, MemoryReactorClock())
                return None
            if options["api"]:
                return ["-api: the web API is not implemented"]
            loaded = options.loadConfig()
            if not loaded.services:
                return ["the configuration has no services"]
            buildServices(MemoryReactorClock(), loaded)
        except SystemExit as e:
            if e.code in (0, None):
                return None
            return [line.removeprefix("gostrelay: ") for line in err.getvalue().splitlines()] or [f"exit {e.code}"]
        except usage.UsageError as e:
            return [str(e)]
        except RefusedConfiguration as e:
            return list(e.problems)
        except ConfigError as e:
            return [str(e)]
        except Exception as e:  # noqa: BLE001 - any failure is the finding
            return [f"{type(e).__name__}: {e}"]
    return None


def acceptable(line: str, problems: list[str], shown: list[str]) -> bool:
    """
    Whether a failing documented command fails as documented: its fence
    shows exactly its problems (C{gostrelay: ...} lines), or every problem
    is a file the line names that the reader provides.
    """
    output = []
    for text in shown:
        if text.strip().startswith("$ "):
            break  # the next command's prompt: its output is its own
        output.append(text.strip())
    printed = [text.removeprefix("gostrelay: ") for text in output if text.startswith("gostrelay: ")]
    if printed and sorted(printed) == sorted(problems):
        return True
    for problem in problems:
        m = re.search(r"(\S+?):? No such file or directory", problem) or re.search(r"'([^']+)' is not a directory", problem)
        if m is None or os.path.basename(m.group(1).rstrip(":/")) not in line:
            return False
    return True


def documentedCommands() -> list[tuple[str, int, str, str, list[str], list[str]]]:
    """
    C{(file, line number, line, program, arguments, lines shown after it)}
    of every documented command line that is checked (not opted out with
    L{MARKER}).
    """
    found = []
    for path in docFiles():
        relative = os.path.relpath(path, ROOT)
        for number, line, after in fencedLinesWithOutput(path):
            if _MARKER.search(line):
                continue
            try:
                command = commandArguments(line)
            except ValueError:
                command = commandArguments(line.split(" #", 1)[0]) if "gostrelay" in line or "twistd" in line else None
            if command is not None:
                found.append((relative, number, line.strip(), *command, after))
    return found


class DocumentedCommandLineTests(SynchronousTestCase):
    def test_everyCommandLineParses(self) -> None:
        """
        Every C{gostrelay} / C{twistd} line in a fence of docs/*.md or
        README.md parses.
        """
        commands = documentedCommands()
        self.assertGreater(len(commands), 20, "the docs check found almost no command lines: is the scan broken?")
        home = os.path.abspath(self.mktemp())
        os.makedirs(home)
        failures = []
        for relative, number, line, program, arguments, shown in commands:
            problems = dryRun(program, arguments, home)
            if problems is not None and not acceptable(line, problems, shown):
                failures.append(f"{relative}:{number}: {line}\n    " + "\n    ".join(problems))
        self.assertEqual(
            failures,
            [],
            "documented command lines that do not run (fix the line, show its errors after it in the fence, "
            "or opt a line with placeholders out with a comment saying so at its end, "
            f"{MARKER!r}):\n" + "\n".join(failures),
        )


class ScannerTests(SynchronousTestCase):
    """
    The scanner finds what a reader would run, and honours the marker.
    """

    def test_shellSyntax(self) -> None:
        self.assertEqual(commandArguments('$ gostrelay -L "relay://a:b@:8420" | head'), ("gostrelay", ["-L", "relay://a:b@:8420"]))
        self.assertEqual(commandArguments("sudo GOST=1 twistd -n relay -L :8080 &"), ("twistd", ["-n", "relay", "-L", ":8080"]))
        self.assertEqual(commandArguments("python3 -m gostrelay -V  # prints the version"), ("gostrelay", ["-V"]))
        self.assertEqual(commandArguments("gostrelay -L :8080 2>&1 >log"), ("gostrelay", ["-L", ":8080"]))
        self.assertIsNone(commandArguments("curl -x http://127.0.0.1:8080 http://example.org/"))
        self.assertIsNone(commandArguments("2026-11-25T22:36:22+0000 [-] gostrelay starting"))

    def test_marker(self) -> None:
        self.assertTrue(_MARKER.search("gostrelay -L relay://:<port>   # placeholders: <port>"))
        self.assertTrue(_MARKER.search("twistd relay [options]   # the plugin (placeholders: [options])"))
        self.assertFalse(_MARKER.search("gostrelay -L relay://:8420   # a relay server"))

    def test_fencesAndContinuations(self) -> None:
        path = self.mktemp()
        with open(path, "w", encoding="utf-8") as f:
            f.write(
                "gostrelay -L outside\n"
                "```sh\n"
                "gostrelay -L :1 \\\n"
                "  -F relay://h:2\n"
                "```\n"
                "~~~\n"
                "twistd -n relay -L :3\n"
                "~~~\n"
            )
        self.assertEqual(list(fencedLines(path)), [(3, "gostrelay -L :1    -F relay://h:2"), (7, "twistd -n relay -L :3")])

    def test_badLineReported(self) -> None:
        """
        A line that does not run is reported with why (the check can
        fail); a good one is not.
        """
        home = os.path.abspath(self.mktemp())
        os.makedirs(home)
        self.assertIsNotNone(dryRun("gostrelay", ["-L", "relay://:<port>"], home))
        self.assertIsNotNone(dryRun("gostrelay", ["--no-such-flag"], home))
        self.assertEqual(
            dryRun("gostrelay", ["-L", "relay+quic://:8443"], home), ["relay+quic://:8443: listener 'quic' is not implemented"]
        )
        self.assertIsNotNone(dryRun("twistd", ["-n", "--pidfile=", "relay", "--no-such-flag"], home))
        self.assertIsNone(dryRun("gostrelay", ["-L", "relay://alice:s3cret@:8420"], home))
        self.assertIsNone(dryRun("gostrelay", ["-L", "relay://:8420", "-O", "yaml"], home))
        self.assertIsNone(dryRun("twistd", ["-n", "--pidfile=", "relay", "-L", ":8080", "-F", "relay://h:8420"], home))

    def test_documentedFailures(self) -> None:
        """
        A failure passes only when the fence shows exactly its problems, or
        when it is a missing file the line names.
        """
        line = 'gostrelay -L "relay+quic://:8443"'
        problems = ["relay+quic://:8443: listener 'quic' is not implemented"]
        self.assertTrue(acceptable(line, problems, ["gostrelay: relay+quic://:8443: listener 'quic' is not implemented", "$ echo $?"]))
        self.assertFalse(acceptable(line, problems, ["gostrelay: relay+quic://:8443: listener 'quic' is broken"]))
        self.assertFalse(acceptable(line, problems, []))
        self.assertTrue(acceptable("gostrelay -C gost.yaml", ["gost.yaml: No such file or directory"], []))
        self.assertFalse(acceptable("gostrelay -L :1", ["gost.yaml: No such file or directory"], []))
        self.assertTrue(acceptable("relay --listen ssl:1:certKey=cert.pem", ["x: cannot read /tmp/t/cert.pem: No such file or directory"], []))
        # Output shown after the next prompt is that command's, not this one's.
        self.assertFalse(acceptable(line, problems, ["$ gostrelay -L x", "gostrelay: " + problems[0]]))


#: A C{clientFromString(reactor, "...")} or C{serverFromString(reactor,
#: r"...")} call in Python shown in the docs (plain or raw string literal;
#: f-strings are left out: they are templates).
_ENDPOINT_CALL = re.compile(r'\b(clientFromString|serverFromString)\(\s*reactor,\s*(r?)"((?:[^"\\]|\\.)*)"')
#: A cell of docs/twisted.md's nesting table naming a whole description.
_TABLE_DESCRIPTION = re.compile(r"^\|[^|]*\|\s*`([a-z0-9]+:[^`]*)`\s*\|\s*$")


def documentedEndpointStrings() -> list[tuple[str, str, str]]:
    """
    C{(where, kind, description)} for every endpoint description the docs
    show a Python program passing to C{clientFromString}/C{serverFromString},
    and every row of twisted.md's nesting table (client descriptions, except
    the C{rtcp:} ones).
    """
    found = []
    for path in docFiles():
        relative = os.path.relpath(path, ROOT)
        with open(path, encoding="utf-8") as f:
            text = f.read()
        for m in _ENDPOINT_CALL.finditer(text):
            function, raw, literal = m.groups()
            description = literal if raw else literal.encode().decode("unicode_escape")
            number = text.count("\n", 0, m.start()) + 1
            found.append((f"{relative}:{number}", "server" if function == "serverFromString" else "client", description))
        if relative == os.path.join("docs", "twisted.md"):
            for number, line in enumerate(text.splitlines(), 1):
                table = _TABLE_DESCRIPTION.match(line)
                if table:
                    description = table.group(1)
                    kind = "server" if description.startswith("rtcp:") else "client"
                    found.append((f"{relative}:{number}", kind, description))
    return found


class DocumentedEndpointStringTests(SynchronousTestCase):
    """
    docs/twisted.md says every endpoint string it shows parses: so does
    every one in docs/, with gostrelay's parsers (nothing listens or dials:
    a memory reactor).  Left out: a string with an elision (C{...}).
    Accepted failures: a file the string names that
    the reader provides (C{certFile=cert.pem}), and a prefix registered only
    by the example plugin package (C{srctcp:}, installed by
    tests/test_plugin_example.py).
    """

    def test_everyEndpointStringParses(self) -> None:
        from twisted.internet.endpoints import clientFromString, serverFromString

        with open(os.path.join(ROOT, "examples", "gostrelay-echo", "twisted", "plugins", "gostrelay_echo_plugins.py")) as f:
            examplePrefixes = set(re.findall(r'prefix = "([a-z0-9]+)"', f.read()))
        self.assertEqual(examplePrefixes, {"srctcp"})
        strings = documentedEndpointStrings()
        self.assertGreater(len(strings), 15, "the scan found almost no endpoint strings: is it broken?")
        failures = []
        for where, kind, description in strings:
            if "..." in description:
                continue  # an elision in prose (design.md: relay:...)
            parse = serverFromString if kind == "server" else clientFromString
            try:
                parse(MemoryReactorClock(), description)
            except Exception as e:
                why = str(e)
                if "No such file or directory" in why or description.split(":", 1)[0] in examplePrefixes:
                    continue
                failures.append(f"{where}: {kind} {description}\n    {type(e).__name__}: {why}")
        self.assertEqual(failures, [], "documented endpoint strings that do not parse:\n" + "\n".join(failures))
