"""What any input may be instead of what a rule expects: a link, something unreadable, a special file, a
non-finite number. One rule each, shared by check, pack and publish (pack and publish refuse; check reports).

A submission tree holds plain files and folders. A symbolic link is refused wherever it points: to a file
outside the tree it would publish (or score) that file, to a folder above the tree it would publish the
filesystem, inside the tree it makes the tarball differ from what was checked, and a loop hides what is beside
it. So there is no "safe" link, and one rule is simpler to keep than several.
"""

from __future__ import annotations

from subtool.checker.registry import define
from subtool.mlperf import layout

SYMLINK = define(
    layout.SYMLINK,
    "error",
    "A symbolic link in a division folder (closed/, open/, network/), wherever it points: outside the tree, "
    "inside it, nowhere (dangling) or to itself (a loop). A submission holds plain files and folders; `subtool "
    "pack` and `subtool publish` refuse a tree with a link by this same rule, before anything is written or "
    "pushed.",
    "accepted: a link is read through where the checker opens a file and otherwise ignored (a loop beside a "
    "result passes)",
)
UNREADABLE = define(
    layout.UNREADABLE,
    "error",
    "A file or folder in a division folder cannot be read (permissions, I/O error). Everything beside it is "
    "still checked. `subtool pack` and `subtool publish` refuse it by this same rule.",
    "crashes with a traceback, or skips the folder silently",
)
SPECIAL_FILE = define(
    layout.SPECIAL_FILE,
    "error",
    "An entry that is neither a regular file nor a folder (FIFO, socket, device): reading it could block or never "
    "end. `subtool pack` and `subtool publish` refuse it by this same rule.",
    "hangs on a FIFO",
)
UNPRINTABLE_NAME = define(
    layout.UNPRINTABLE_NAME,
    "error",
    "A file or folder name in a division folder holds a control character (line break, tab, escape sequence) or "
    "bytes that are not UTF-8. `subtool pack`, `pack --verify`, `score` and `publish` refuse it by this same rule "
    "or by extraction's.",
    "accepted (a name with a line break breaks the tools that list files one per line)",
)
NOT_FINITE = define(
    "value.not_finite",
    "error",
    "A number the checker reads is NaN or ±Infinity (or too large for a float, e.g. 1e999): a LoadGen detail "
    "log value (result, latency, settings), an accuracy.txt metric, a summary log value, or any number in a "
    "JSON file (system description, measurements.json, model_mapping.json). No such number is a result; JSON "
    "has none.",
    "accepts them: a NaN or Infinity result passes and is written to summary.csv",
)
BAD_NAME = define(
    layout.BAD_NAME,
    "error",
    f"A submitter or system folder whose name is not {layout.NAME_ALPHABET}. The same check, under the same "
    "id, refuses the name in `subtool package`, `all`, `system`, `pack --name` and `publish`.",
    "the current checker accepts any name; the previous one and MLCommons' repository_checks.sh refuse names "
    "with a space or a leading dot",
)
