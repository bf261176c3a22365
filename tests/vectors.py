"""
Access to the golden wire vectors recorded from real GOST code.

The vectors live in the repository, in C{tests/data/vectors} (see
C{tests/data/README.md}), so a bare clone tests against them.  They are
required: when they cannot be found every helper here raises
L{VectorsMissing}, so tests that use them fail (they never skip), because a
suite that silently stops checking against GOST is worse than a red one.

Layout::

    index.json                 {"cases": [{name, file, hex, direction, fields, ...}]}
    *.bin                      raw bytes of each case
    transcripts/index.json     {"transcripts": [{file, scenario, decoded, ...}]}
    transcripts/*.json         whole client<->server sessions
    kcp/...                    KCP datagrams and their decoding

Every loader returns a fresh copy of the parsed JSON, so a test may mutate
what it gets without affecting other tests.
"""

from __future__ import annotations

import copy
import json
import os
from functools import cache
from typing import Any, Iterable

from twisted.python.filepath import FilePath

#: Where the vectors live: inside the repository, next to this module.
VECTORS_DIRECTORY = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "vectors")


class VectorsMissing(Exception):
    """
    The golden vectors (or one file or case among them) cannot be found.
    """


def vectorsDir() -> FilePath:
    """
    The directory holding the golden vectors.

    @raise VectorsMissing: if it does not exist or has no C{index.json}.
    """
    path = FilePath(VECTORS_DIRECTORY)
    if not path.isdir():
        raise VectorsMissing(f"golden vectors not found at {path.path} (tests/data/vectors in the repository)")
    if not path.child("index.json").isfile():
        raise VectorsMissing(f"{path.path} has no index.json")
    return path


def vectorPath(*segments: str) -> FilePath:
    """
    A file inside the vectors directory, e.g. C{vectorPath("transcripts",
    "rtcp_bind-conn1.json")}.

    @raise VectorsMissing: if the file does not exist.
    """
    path = vectorsDir()
    for segment in segments:
        path = path.child(segment)
    if not path.exists():
        raise VectorsMissing(f"vector file missing: {path.path}")
    return path


@cache
def _loadJSONCached(pathText: str) -> Any:
    with open(pathText, "rb") as f:
        return json.loads(f.read().decode("utf-8"))


def loadJSON(*segments: str) -> Any:
    """
    Parse a JSON file inside the vectors directory.
    """
    return copy.deepcopy(_loadJSONCached(vectorPath(*segments).path))


def loadBytes(*segments: str) -> bytes:
    """
    The raw content of a file inside the vectors directory (a C{.bin}).
    """
    return vectorPath(*segments).getContent()


def loadIndex() -> dict:
    """
    The parsed C{index.json}: C{{"cases": [...], "conventions": ..., ...}}.
    """
    return loadJSON("index.json")  # type: ignore[no-any-return]


def cases() -> list[dict]:
    """
    All cases of C{index.json}, in file order.
    """
    return loadIndex()["cases"]  # type: ignore[no-any-return]


def caseNames() -> list[str]:
    return [c["name"] for c in cases()]


def casesWithPrefix(*prefixes: str) -> list[dict]:
    """
    The cases whose name starts with any of C{prefixes}, in file order.
    """
    return [c for c in cases() if c["name"].startswith(tuple(prefixes))]


def case(name: str) -> dict:
    """
    One case of C{index.json} by name.

    @raise VectorsMissing: if there is no such case.
    """
    for c in cases():
        if c["name"] == name:
            return c
    raise VectorsMissing(f"no vector case named {name!r} in index.json")


def caseBytes(name: str) -> bytes:
    """
    The bytes of a case, from its C{hex} field.
    """
    return bytes.fromhex(case(name)["hex"])


def caseFileBytes(name: str) -> bytes:
    """
    The bytes of a case, from its C{.bin} file.
    """
    return loadBytes(case(name)["file"])


def caseWrites(name: str) -> list[bytes]:
    """
    The individual writes of a case when index.json records them, else the
    whole case as one write.
    """
    c = case(name)
    return [bytes.fromhex(w) for w in c.get("writes", [c["hex"]])]


def loadTranscriptIndex() -> dict:
    """
    The parsed C{transcripts/index.json}: C{{"about": ..., "transcripts": [...]}}.
    """
    return loadJSON("transcripts", "index.json")  # type: ignore[no-any-return]


def transcripts(scenario: str | None = None) -> list[dict]:
    """
    The entries of C{transcripts/index.json}, optionally only one scenario's.
    """
    entries = loadTranscriptIndex()["transcripts"]
    if scenario is not None:
        entries = [t for t in entries if t["scenario"] == scenario]
    return entries  # type: ignore[no-any-return]


def transcript(fileName: str) -> dict:
    """
    One transcript file of C{transcripts/} (e.g. C{"rtcp_bind-conn1.json"}).
    """
    return loadJSON("transcripts", fileName)  # type: ignore[no-any-return]


def loadKCPIndex() -> dict:
    """
    The parsed C{kcp/index.json}.
    """
    return loadJSON("kcp", "index.json")  # type: ignore[no-any-return]


def hexBytes(text: str | Iterable[str]) -> bytes:
    """
    Bytes from hex text; spaces and C{|} separators (as in the spec's
    examples) are ignored, and a list of pieces is joined.
    """
    if not isinstance(text, str):
        text = "".join(text)
    return bytes.fromhex(text.replace("|", " ").replace(" ", "").replace("\n", ""))


__all__ = [
    "VECTORS_DIRECTORY",
    "VectorsMissing",
    "case",
    "caseBytes",
    "caseFileBytes",
    "caseNames",
    "caseWrites",
    "cases",
    "casesWithPrefix",
    "hexBytes",
    "loadBytes",
    "loadIndex",
    "loadJSON",
    "loadKCPIndex",
    "loadTranscriptIndex",
    "transcript",
    "transcripts",
    "vectorPath",
    "vectorsDir",
]
