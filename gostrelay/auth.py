"""
User authentication as GOST's built-in authenticator does it
(spec-relay.md 2.2): a table of users; a user whose stored password is empty
accepts any password; an empty table rejects everyone.
"""

from __future__ import annotations

import hmac
from collections.abc import Iterable

from twisted.python.filepath import FilePath

from gostrelay.config.model import AuthConfig, Config, ConfigError, HandlerConfig


class Authenticator:
    def __init__(self, users: dict[str, str]) -> None:
        self._users = dict(users)

    def authenticate(self, username: str, password: str) -> bool:
        """
        Check C{(username, password)}.  The password comparison runs in
        constant time; the username lookup is a dictionary lookup (user names
        are not secrets in GOST's model: they appear in logs).
        """
        stored = self._users.get(username)
        if stored is None:
            return False
        if stored == "":
            return True
        return hmac.compare_digest(
            stored.encode("utf-8", "surrogateescape"),
            password.encode("utf-8", "surrogateescape"),
        )

    def __len__(self) -> int:
        return len(self._users)


def parseUsersFile(text: str) -> dict[str, str]:
    """
    GOST's users file: one C{user password} per line, C{#} comments,
    blank lines ignored; a line with only a user name has an empty password.
    """
    users: dict[str, str] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        fields = line.split(None, 1)
        users[fields[0]] = fields[1].strip() if len(fields) > 1 else ""
    return users


def _readUsersFile(path: str, where: str) -> dict[str, str]:
    try:
        return parseUsersFile(FilePath(path).getContent().decode("utf-8", "surrogateescape"))
    except OSError as e:
        raise ConfigError(f"{where}: cannot read users file {path}: {e.strerror}") from None


def _usersOf(auths: Iterable[AuthConfig]) -> dict[str, str]:
    return {a.username: a.password for a in auths}


def emptyUserWarning(handler: HandlerConfig) -> str | None:
    """
    The start-up warning for a password given with an empty user name
    (C{relay://:secret@:8420}): as in GOST that means no authentication,
    which the person who wrote a password surely did not intend.  C{None}
    when it does not apply.  The password is not part of the text.
    """
    if handler.auther or any(handler.authers):
        return None
    auth = handler.auth
    if auth is None or auth.file or auth.username or not auth.password:
        return None
    return (
        "a password is given with an empty user name (\":PASSWORD@\"): as in GOST, "
        "that means NO authentication; every client is served. Give a user name to require one"
    )


def authenticatorFor(handler: HandlerConfig, config: Config, where: str) -> Authenticator | None:
    """
    The authenticator a handler configuration asks for, or C{None} when it
    asks for none: named authers first (C{auther}, C{authers}: any one
    accepting is enough), else the single C{auth} (an empty username means
    no authentication, as in GOST).
    """
    names = [n for n in [handler.auther, *handler.authers] if n]
    if names:
        users: dict[str, str] = {}
        for name in names:
            auther = config.auther(name)
            if auther is None:
                raise ConfigError(f"{where}: auther {name!r} is not defined")
            users.update(_usersOf(auther.auths))
            if auther.file is not None and auther.file.path:
                users.update(_readUsersFile(auther.file.path, f"{where}: auther {name!r}"))
        return Authenticator(users)
    auth = handler.auth
    if auth is None:
        return None
    if auth.file:
        return Authenticator(_readUsersFile(auth.file, where))
    if not auth.username:
        return None
    return Authenticator({auth.username: auth.password})
