"""Fixtures of the pack tests: real LoadGen bert-99 logs, and one short valid hand-in packed from them, made once
for every pack test that reads them (each test copies what it changes: pack_handins.copy_handin)."""

from __future__ import annotations

import pytest
from pack_handins import pack_team, teamgen


@pytest.fixture(scope="session")
def bert_logs(tmp_path_factory) -> teamgen.Logs:
    """Real LoadGen bert-99 Offline logs: one VALID short run, one INVALID run, one accuracy run."""
    pytest.importorskip("mlperf_loadgen", reason="verify re-checks real LoadGen logs (pip install .[run])")
    folder = tmp_path_factory.mktemp("verify-loadgen")
    conf, invalid_conf = folder / "user.conf", folder / "invalid.conf"
    conf.write_text("bert.Offline.min_duration = 50\nbert.Offline.target_qps = 100000\n")
    invalid_conf.write_text("bert.Offline.min_duration = 60000\nbert.Offline.target_qps = 0.1\n")
    teamgen.run_loadgen(
        [
            teamgen.LoadGenJob(
                conf_model="bert",
                scenario="Offline",
                user_conf=conf,
                total=10833,
                runs=(("performance", folder / "valid", 0.06), ("accuracy", folder / "acc", 0.0)),
            ),
            teamgen.LoadGenJob(
                conf_model="bert",
                scenario="Offline",
                user_conf=invalid_conf,
                total=10833,
                runs=(("performance", folder / "invalid", 0.0),),
            ),
        ]
    )
    return teamgen.Logs(
        perf={"bert-99": [folder / "valid", folder / "invalid"]},
        acc={"bert-99": folder / "acc"},
        user_conf={"bert-99": conf},
    )


@pytest.fixture(scope="session")
def packed_valid(bert_logs, tmp_path_factory):
    """The VALID short run packed with --waive perf.min_duration (verify passes it)."""
    return pack_team(bert_logs, tmp_path_factory.mktemp("verify-valid"), 0, "perf.min_duration", exit_codes=(0,))
