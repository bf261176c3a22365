"""
Configuration files as GOST reads them (spec-relay.md 10.1): YAML or JSON
by extension, C{-} for standard input, or inline JSON on the command line;
and the default search when neither C{-L} nor C{-C} is given.
"""

from __future__ import annotations

import json
import os
import sys
from typing import IO, Any

import yaml

from gostrelay.config.model import Config, ConfigError

SEARCH_DIRECTORIES = ("/etc/gost", "~/.gost", ".")
SEARCH_NAMES = ("gost.yaml", "gost.yml", "gost.json")


def _parse(text: str, fmt: str, where: str) -> dict[str, Any]:
    try:
        data = json.loads(text) if fmt == "json" else yaml.safe_load(text)
    except json.JSONDecodeError as e:
        raise ConfigError(f"{where}:{e.lineno}:{e.colno}: cannot parse JSON: {e.msg}") from None
    except yaml.MarkedYAMLError as e:
        raise ConfigError(_yamlErrorLine(e, where)) from None
    except (ValueError, yaml.YAMLError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ConfigError(f"{where}: cannot parse {fmt.upper()}: {first}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: the top level must be a mapping")
    return data


def _yamlErrorLine(e: yaml.MarkedYAMLError, where: str) -> str:
    """
    PyYAML's several lines (context, problem, marks, a snippet) as one:
    C{file:line:column: problem (context at line:column)}.
    """
    mark = e.problem_mark or e.context_mark
    position = f":{mark.line + 1}:{mark.column + 1}" if mark is not None else ""
    problem = e.problem or e.context or "cannot parse YAML"
    text = f"{where}{position}: cannot parse YAML: {problem}"
    if e.context and e.problem and e.context_mark is not None:
        text += f" ({e.context} at {e.context_mark.line + 1}:{e.context_mark.column + 1})"
    return text


def loadSource(source: str, stdin: IO[str] | None = None) -> Config:
    """
    Load one C{-C} source: a file path, C{-}, or inline JSON.
    """
    stripped = source.strip()
    if stripped == "-":
        text = (stdin or sys.stdin).read()
        fmt = "json" if text.lstrip().startswith("{") else "yaml"
        return Config.fromDict(_parse(text, fmt, "<stdin>"))
    if stripped.startswith("{"):
        return Config.fromDict(_parse(stripped, "json", "<inline json>"))
    if stripped.startswith(("http://", "https://")):
        raise ConfigError(f"{source}: loading configuration over HTTP is not implemented")
    path = os.path.expanduser(source)
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError as e:
        raise ConfigError(f"{source}: {e.strerror}") from None
    fmt = "json" if path.lower().endswith(".json") else "yaml"
    return Config.fromDict(_parse(text, fmt, source))


def findDefault() -> str | None:
    """
    The first of gost.yaml, gost.yml, gost.json in /etc/gost, ~/.gost and
    the working directory, as GOST searches; C{None} when there is none.
    """
    for directory in SEARCH_DIRECTORIES:
        for name in SEARCH_NAMES:
            path = os.path.join(os.path.expanduser(directory), name)
            if os.path.isfile(path):
                return path
    return None


def dumpConfig(config: Config, fmt: str) -> str:
    data = config.toDict()
    if fmt == "json":
        return json.dumps(data, indent=2) + "\n"
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True)
