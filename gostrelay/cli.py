"""
The C{gostrelay} console script: C{twistd relay} without twistd (no pid
file, logs on standard output).
"""

from __future__ import annotations

import sys
from typing import Sequence

from twisted.python import usage

from gostrelay import logs
from gostrelay.build import CannotStart
from gostrelay.tap import Options, makeService


def main(argv: Sequence[str] | None = None) -> None:
    options = Options()
    try:
        options.parseOptions(list(sys.argv[1:] if argv is None else argv))
    except usage.UsageError as e:
        print(f"gostrelay: {e}", file=sys.stderr)
        print("Try 'gostrelay --help'.", file=sys.stderr)
        raise SystemExit(2)

    # Imported here: importing the reactor installs the default one.
    from twisted.internet import reactor

    logs.start(options["debug"])
    top = makeService(options, reactor)
    try:
        top.privilegedStartService()
    except CannotStart as e:  # a port that cannot be bound, ...
        print(f"gostrelay: {e}", file=sys.stderr)
        raise SystemExit(1)
    except Exception as e:
        print(f"gostrelay: cannot start: {e}", file=sys.stderr)
        raise SystemExit(1)
    top.startService()
    reactor.addSystemEventTrigger("before", "shutdown", top.stopService)
    reactor.run()  # type: ignore[attr-defined]


if __name__ == "__main__":
    main()
