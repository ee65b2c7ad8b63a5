"""What a name or a base URL that fetch did not make (a Hub listing's, a plan's, a mirror's) may be."""

from __future__ import annotations

from pathlib import PurePosixPath
from urllib.parse import urlsplit

from subtool.errors import SubtoolError

__all__ = ["check_base_url", "clash", "safe_name"]


def safe_name(name: object) -> bool:
    """A relative path that stays inside the asset folder, in printable UTF-8 (a listing's or a plan's names come
    from elsewhere: no control character, no half of a surrogate pair)."""
    if not isinstance(name, str) or not name or "\\" in name:
        return False
    if not name.isprintable():  # control and format characters (a right-to-left mark), half a surrogate pair
        return False
    path = PurePosixPath(name)
    return not path.is_absolute() and all(p not in ("..", ".", "") for p in name.split("/"))


def clash(names: list[str]) -> str | None:
    """A name of `names` that cannot sit beside the others in one folder: the same name twice, or twice but for
    case (one file on a case-blind file system), or a file where another name needs a folder ('a' and 'a/b')."""
    files: dict[str, str] = {}
    for name in names:
        key = name.casefold()
        if key in files:
            return name
        files[key] = name
    folders = {name.casefold().rsplit("/", i)[0] for name in names for i in range(1, name.count("/") + 1)}
    return next((name for name in names if name.casefold() in folders), None)


def check_base_url(url: str, *, what: str, rule: str) -> None:
    """A mirror's or Hub endpoint's base URL: http(s), a host, a port that parses, and no credentials, query or
    fragment (a password or token there would be printed in every line that names a URL, and written into the
    plan; ~/.netrc, which fetch reads, keeps a mirror's login out of both)."""
    from subtool.errors import EXIT_USAGE

    def refuse(why: str, hint: str = "e.g. https://mirror.example.org/hf") -> SubtoolError:
        shown = url if "@" not in url and "?" not in url and "#" not in url else "(not shown)"
        return SubtoolError(f"{what} {shown}: {why}", rule=rule, hint=hint, exit_code=EXIT_USAGE)

    try:
        parts = urlsplit(url)
        port_ok = parts.port is None or parts.port > 0
    except ValueError as exc:  # a bad port, a bad IPv6 address
        raise refuse(f"is not a URL ({exc})") from None
    if parts.username is not None or parts.password is not None or "@" in parts.netloc:
        raise refuse("carries a login in the URL", "put the mirror's login in ~/.netrc (fetch reads it)") from None
    if parts.query or parts.fragment or "?" in url or "#" in url:
        raise refuse("has a query or a fragment: a base URL has neither (a token there would be printed)")
    if parts.scheme not in ("http", "https") or not parts.hostname or not port_ok:
        raise refuse("is not an http(s) URL with a host")
    if any(ord(c) < 0x21 or ord(c) == 0x7F for c in url):
        raise refuse("holds a space or a control character")
