"""What `subtool all` asks the checker to waive for a short run must be rules the checker knows: an unknown id is
refused (`cli.waive`, exit 2), which once made every short Server run of `all` fail at its check stage."""

import pytest

from subtool.checker.rules import all_rules
from subtool.pipeline import short_run_waivers


@pytest.mark.parametrize("scenario", ["Offline", "Server", "SingleStream", "MultiStream", "Interactive"])
def test_short_run_waivers_are_rules_the_checker_knows(scenario):
    waived = short_run_waivers(scenario, "short")
    assert waived and waived <= set(all_rules()), sorted(waived - set(all_rules()))
    assert short_run_waivers(scenario, "valid") == frozenset()
