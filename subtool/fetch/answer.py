"""What in a server's answer makes its body not the file, or the answer unreadable, said as one line each.

fetch asks for every file as is (`Accept-Encoding: identity`) and writes the body's bytes unchanged, so that the
checksum judges the file as published. A body the server compressed on the way (`Content-Encoding: gzip` on a
JSON file), or framed in a transfer coding fetch does not read, is not the file: it was refused as a checksum or
size mismatch, which sent users looking for a corrupt file.
"""

from __future__ import annotations

from collections.abc import Mapping

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
READ_TRANSFER_CODINGS = ("chunked", "identity")  # what http.client unframes; another leaves its framing in the body


def _codings(value: str) -> list[str]:
    return [c.strip().lower() for c in value.split(",") if c.strip() and c.strip().lower() != "identity"]


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
    if any(c not in READ_TRANSFER_CODINGS for c in _codings(transfer)):
        return f"the server framed the body as Transfer-Encoding: {_shown(transfer)}, which fetch does not read"
    return None
