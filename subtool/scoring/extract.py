"""Scoring unpacks through the project's one safe extraction, which lives on the pack side
(subtool/pack/safe_tar.py) so that `subtool pack --verify` uses the very same checks and limits."""

from subtool.pack.safe_tar import (
    ExtractLimits,
    ExtractStats,
    Refused,
    check_tree_files,
    extract_tarball,
    file_hashes,
    filters_available,
)

__all__ = [
    "ExtractLimits",
    "ExtractStats",
    "Refused",
    "check_tree_files",
    "extract_tarball",
    "file_hashes",
    "filters_available",
]
