"""What in a server's answer makes its body not the file, or the answer unreadable, said as one line each.

fetch asks for every file as is (`Accept-Encoding: identity`) and writes the body's bytes unchanged, so that the
checksum judges the file as published. A body the server compressed on the way (`Content-Encoding: gzip` on a
JSON file), or framed in a transfer coding fetch does not read, is not the file: it was refused as a checksum or
size mismatch, which sent users looking for a corrupt file. What requests and urllib3 refuse in the headers (a
header line over 64 KiB, over 100 headers, two Content-Lengths that differ, a redirect to file://) was 'cannot
connect (ConnectionError)' or 'cannot download (InvalidSchema)', naming neither the server's fault nor the rule.
"""

from __future__ import annotations

import http.client
import re
from collections.abc import Iterator, Mapping

import requests
import urllib3

# a Content-Encoding a server puts on a file that is itself compressed so (Apache's `AddEncoding x-gzip .gz`, an
# object store's metadata): the body is then the file as published, which its checksum still judges
OWN_CODING = {
    "gzip": (".gz", ".tgz"),
    "x-gzip": (".gz", ".tgz"),
    "compress": (".z",),
    "x-compress": (".z",),
    "br": (".br",),
    "zstd": (".zst",),
    "xz": (".xz",),
    "bzip2": (".bz2",),
}
# what http.client reads, each only alone: it unframes `chunked` only as the whole header (`identity, chunked` kept
# its framing in the body); another coding leaves its framing in the body too
READ_TRANSFER_CODINGS = ("chunked", "identity")


def _tokens(value: str) -> list[str]:
    """The codings a header lists, lower case, as the server sent them."""
    return [c.strip().lower() for c in value.split(",") if c.strip()]


def _codings(value: str) -> list[str]:
    return [c for c in _tokens(value) if c != "identity"]


def _shown(value: str) -> str:
    return ascii(value.strip())[1:-1][:60]  # a server's text: no control character, no endless line


def coding_problem(headers: Mapping[str, str], name: str) -> str | None:
    """Why the body of an answer with these headers is not the file `name` (or None): a content coding fetch did
    not ask for, unless the file is itself compressed that way, or a transfer coding other than chunked."""
    content = headers.get("Content-Encoding", "")
    codings = _codings(content)
    own = len(codings) == 1 and name.lower().endswith(OWN_CODING.get(codings[0], ()))
    if codings and not own:
        return (
            f"the server sent the file compressed (Content-Encoding: {_shown(content)}) although fetch asked for "
            "it as is (identity): those bytes are not the file"
        )
    transfer = headers.get("Transfer-Encoding", "")
    framing = set(_tokens(transfer))
    if len(framing) > 1 or not framing <= set(READ_TRANSFER_CODINGS):
        return f"the server framed the body as Transfer-Encoding: {_shown(transfer)}, which fetch does not read"
    return None


def _causes(exc: BaseException) -> Iterator[BaseException]:
    """`exc` and what it wraps (requests wraps urllib3's errors, which wrap http.client's), a few levels deep."""
    todo, seen = [exc], 0
    while todo and seen < 12:
        e = todo.pop(0)
        seen += 1
        yield e
        todo += [a for a in e.args if isinstance(a, BaseException)]
        todo += [x for x in (e.__cause__, getattr(e, "reason", None)) if isinstance(x, BaseException)]


def failure(exc: BaseException) -> tuple[str, str] | None:
    """(what the server did, rule) for an error requests raised on the server's answer, or None (the network's)."""
    if isinstance(exc, (ValueError, UnicodeError)) and not isinstance(
        exc, (requests.exceptions.RequestException, urllib3.exceptions.HTTPError)
    ):  # raised bare while requests reads a redirect's Location: "Invalid IPv6 URL", bytes that are not UTF-8
        return f"the server redirects to an address no client can read ({_shown(str(exc))})", "fetch.redirect"
    for e in _causes(exc):
        if isinstance(e, http.client.LineTooLong):
            return f"the server's answer has a line over 64 KiB ({e})", "fetch.response"
        if type(e) is http.client.HTTPException and "headers" in str(e):  # "got more than 100 headers"
            return f"the server's answer has too many headers ({e})", "fetch.response"
        if isinstance(e, urllib3.exceptions.InvalidHeader):  # requests' own may quote a header fetch sent: unsaid
            return f"the server's answer has a header no HTTP client can trust ({_shown(str(e))})", "fetch.response"
        if isinstance(e, requests.exceptions.InvalidSchema):
            scheme = re.search(r"'([A-Za-z][A-Za-z0-9+.-]{0,20}):", str(e))
            to = f"a URL of scheme {scheme.group(1).lower()!r}" if scheme else "a URL that is not http(s)"
            return f"the server redirects to {to}; fetch follows only http and https", "fetch.redirect"
        if isinstance(e, requests.exceptions.TooManyRedirects):
            return "the server redirects over and over (more than 30 times)", "fetch.redirect"
    return None
