"""Trees of the conformance cases for the edge image benchmark (resnet: SingleStream, MultiStream, Offline): the
only scenario trees with MultiStream, results inferred across scenarios on an edge system, and TEST04.

Each builder lays out one closed edge system; `cases.py` lists them with the rules subtool must report.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from treegen import TreeBuilder, set_log_value

SUB = "TeamX"
RESNET = "resnet"
SCENARIOS = ("SingleStream", "MultiStream", "Offline")


def resnet_rid(scenario: str) -> str:
    return f"closed/{SUB}/results/box/{RESNET}/{scenario}"


def resnet_closed(b: TreeBuilder, ran: dict[str, str] | None = None, skip: tuple[str, ...] = ()) -> None:
    """Every required scenario of an edge system; `ran` files another scenario's run in a folder (folder → run)."""
    b.system("closed", SUB, "box")  # treegen's system is an edge system
    for scenario in SCENARIOS:
        if scenario not in skip:
            run = (ran or {}).get(scenario, scenario)
            b.result("closed", SUB, "box", RESNET, scenario, run_key=f"{RESNET}/{run}")


def _detail(b: TreeBuilder, scenario: str, test: str = "") -> Path:
    base = b.root / resnet_rid(scenario) / test
    return base / "performance" / "run_1" / "mlperf_log_detail.txt"


def m_ms_early_stopping(b):
    resnet_closed(b)
    set_log_value(_detail(b, "MultiStream"), "early_stopping_met", False)


def m_ms_test04_early_stopping(b):
    # the TEST04 run is checked like the main run: its early stopping must hold too
    resnet_closed(b)
    set_log_value(_detail(b, "MultiStream", "TEST04"), "early_stopping_met", False)


def m_ms_from_ss(b):
    resnet_closed(b, {"MultiStream": "SingleStream"})


def m_ms_from_ss_no_estimate(b):
    # MultiStream = 8 × the SingleStream run's 99th-percentile early-stopping estimate, and there is none
    resnet_closed(b, {"MultiStream": "SingleStream"})
    set_log_value(_detail(b, "MultiStream"), "early_stopping_latency_ms", 0)


def m_offline_from_ms(b):
    resnet_closed(b, {"Offline": "MultiStream"})


def m_offline_from_ss(b):
    resnet_closed(b, {"Offline": "SingleStream"})


def m_ms_from_offline(b):
    resnet_closed(b, {"MultiStream": "Offline"})


def m_ss_from_ms(b):
    resnet_closed(b, {"SingleStream": "MultiStream"})


def m_missing_ms(b):
    resnet_closed(b, skip=("MultiStream",))


def m_ms_missing_test04(b):
    resnet_closed(b)
    shutil.rmtree(b.root / resnet_rid("MultiStream") / "TEST04")
