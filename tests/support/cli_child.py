"""`subtool` run in a child process with one thing changed underneath it: the model stack made unimportable, or a
write fault injected. One copy of each script, so that the tests that use them cannot drift apart.

Each is the source of a `python -c` program; the arguments after it are the CLI's (`[sys.executable, "-c",
SCRIPT, "check", "tree"]` runs `subtool check tree`)."""

from __future__ import annotations

# The packages that only running a model needs: a stage that runs none must never import them.
HEAVY = ("torch", "transformers", "mlperf_loadgen", "ray")

BLOCK_HEAVY = (
    "import sys\n"
    "class Block:\n"
    "    def find_spec(self, name, path=None, target=None):\n"
    f"        if name.split('.')[0] in {HEAVY!r}:\n"
    "            raise ImportError('blocked heavy import: ' + name)\n"
    "sys.meta_path.insert(0, Block())\n"
    "from subtool.cli import main\n"
    "sys.argv = ['subtool'] + sys.argv[1:]\n"
    "main()\n"
)

_WRITE_FAULT = """\
import errno, os, sys
real_replace, real_fsync = os.replace, os.fsync
fault, exdev_into = os.environ["FAULT"], EXDEV_INTO
def replace(src, dst, *a, **k):
    if fault == "EXDEV" and exdev_into in str(dst):
        raise OSError(errno.EXDEV, os.strerror(errno.EXDEV), str(src), None, str(dst))
    return real_replace(src, dst, *a, **k)
def fsync(fd):
    if fault == "ENOSPC":
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    return real_fsync(fd)
os.replace, os.fsync = replace, fsync
from subtool.cli import main
sys.argv = ["subtool", *sys.argv[1:]]
main()
"""


def write_fault_script(exdev_into: str = "") -> str:
    """The CLI with the fault named by the child's FAULT variable: ENOSPC makes every fsync fail (a full disk),
    EXDEV every os.replace whose destination contains `exdev_into` (a rename across devices; "" means every one)."""
    return _WRITE_FAULT.replace("EXDEV_INTO", repr(exdev_into))
