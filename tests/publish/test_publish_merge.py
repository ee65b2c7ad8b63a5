"""What a new publish keeps of the team's branch (publish/merge.py), on git entries as the branch lists them."""

from __future__ import annotations

from subtool.publish.git import BlobEntry
from subtool.publish.merge import differing_from_base, kept_from_branch

RESULT = ("closed", "TeamX", "sys1", "bert-99", "Offline")
FILES = [
    "closed/TeamX/results/sys1/bert-99/Offline/performance/run_1/mlperf_log_detail.txt",
    "closed/TeamX/measurements/sys1/bert-99/Offline/user.conf",
    "closed/TeamX/compliance/sys1/bert-99/Offline/TEST01/verify_accuracy.txt",
    "closed/TeamX/systems/sys1.json",
]


def _kept():
    return kept_from_branch([BlobEntry(p, "100644", "0" * 40) for p in FILES], ["TeamX"])


def test_a_result_whose_v5_measurements_or_compliance_alone_differ_from_the_base_is_the_teams():
    """Only the user.conf (or a compliance file) of a v5 result differs on the branch: the result is still the
    team's, so it is named as kept, dropped or reset to the base, never passed over in silence."""
    assert _kept().results == [RESULT]
    for changed in FILES[1:3]:
        assert differing_from_base(_kept(), [("M", changed)]).results == [RESULT], changed


def test_a_result_the_branch_holds_as_the_base_does_is_not_the_teams():
    assert differing_from_base(_kept(), []).results == []
    assert differing_from_base(_kept(), [("M", "closed/TeamX/systems/sys1.json")]).results == []
    other = "closed/TeamX/measurements/sys2/bert-99/Offline/user.conf"  # another system's files
    assert differing_from_base(_kept(), [("A", other)]).results == []
