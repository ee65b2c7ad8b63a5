"""A multi-node run's system description: each node describes itself (run.json `sut.nodes`, written by the Ray
pool), and packaging merges them — the nodes' hardware rather than the packaging machine's, a field the nodes
disagree on left to the user, lying records ignored."""

from __future__ import annotations

import json
import shutil
import sys

from hypothesis import given
from hypothesis import strategies as st
from support.gpu_libraries import fake_pynvml, load
from typer.testing import CliRunner

from subtool.cli import app
from subtool.hostinfo.fields import describe_node, probe_host
from subtool.package.system import detect_system
from subtool.package.system_merge import PER_NODE_FIELDS, recorded_nodes, with_recorded_nodes


def _node_of_eight_h100(monkeypatch) -> dict:
    """What a node with eight NVLinked H100 records of itself (describe_node, through recorded NVML answers)."""
    monkeypatch.setitem(sys.modules, "pynvml", fake_pynvml(load("nvml_h100_x8.json")))
    probe_host.cache_clear()
    try:
        return describe_node()
    finally:
        probe_host.cache_clear()


def _imp(nodes: list, per_worker: list | None = None):
    sut = {"nodes": nodes, "per_worker": per_worker if per_worker is not None else []}
    return type("Imp", (), {"run": {"sut": sut}})()


def _at(node: dict, ip: str, **fields) -> dict:
    return {**node, "node_ip": ip, "fields": {**node["fields"], **fields}}


def test_a_node_describes_exactly_the_per_node_fields(monkeypatch):
    node = _node_of_eight_h100(monkeypatch)
    assert set(node["fields"]) == set(PER_NODE_FIELDS) == set(node["sources"])
    assert node["fields"]["accelerators_per_node"] == 8
    assert node["sources"]["accelerator_model_name"].startswith("library: pynvml")
    assert node["driver"] == "NVIDIA driver 550.54.15"
    json.dumps(node)  # it travels through Ray and into run.json


def test_identical_nodes_replace_the_packaging_machines_hardware(monkeypatch):
    node = _node_of_eight_h100(monkeypatch)
    monkeypatch.setitem(sys.modules, "pynvml", None)  # the login node that packages has no GPU
    local = detect_system(submitter="TeamX", division="open")
    assert local.fields["accelerators_per_node"] == "0"
    workers = [{"node": "n", "node_ip": ip, "samples": 10} for ip in ("10.0.0.1", "10.0.0.2")]
    desc = with_recorded_nodes(local, [_imp([_at(node, "10.0.0.2"), _at(node, "10.0.0.1")], workers)])
    assert desc.fields["accelerators_per_node"] == 8
    assert desc.fields["accelerator_model_name"] == "NVIDIA H100 80GB HBM3"
    assert desc.fields["accelerator_interconnect"] == "NVLink 4.0 (18 links per GPU)"
    assert desc.sources["accelerator_model_name"].startswith("run.json: 2 node(s) agree (library: pynvml")
    assert "accelerator_interconnect" not in desc.guessed
    assert desc.fields["submitter"] == "TeamX"  # the run's own fields stay


def test_nodes_that_differ_leave_the_field_to_the_user_and_idle_nodes_do_not_count(monkeypatch):
    node = _node_of_eight_h100(monkeypatch)
    local = detect_system(submitter="TeamX", division="open")
    nodes = [_at(node, "10.0.0.1"), _at(node, "10.0.0.2", accelerators_per_node=4), _at(node, "10.0.0.3")]
    workers = [
        {"node": "a", "node_ip": "10.0.0.1", "samples": 5},
        {"node": "b", "node_ip": "10.0.0.2", "samples": 5},
        {"node": "c", "node_ip": "10.0.0.3", "samples": 0},  # lost before its first answer: not part of the run
    ]
    assert [n["where"] for n in recorded_nodes([_imp(nodes, workers)])] == ["10.0.0.1", "10.0.0.2"]
    desc = with_recorded_nodes(local, [_imp(nodes, workers)])
    assert desc.fields["accelerators_per_node"] == 8  # a tie: the first node's, by address
    assert "accelerators_per_node" in desc.guessed
    assert desc.sources["accelerators_per_node"] == "guessed (the nodes differ: 8 on 10.0.0.1; 4 on 10.0.0.2)"


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(st.sampled_from(["fields", "node_ip", *PER_NODE_FIELDS[:3]]), inner, max_size=3)
    ),
    max_leaves=12,
)


@given(st.lists(_json, max_size=3), _json)
def test_lying_node_records_never_raise_and_only_text_or_numbers_get_in(nodes, per_worker):
    desc = detect_system(submitter="TeamX", division="open")
    merged = with_recorded_nodes(desc, [_imp(nodes, per_worker if isinstance(per_worker, list) else None)])
    for name in PER_NODE_FIELDS:
        value = merged.fields[name]
        assert isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool))


def test_package_describes_the_nodes_a_run_recorded(pkg_lg, tmp_path, monkeypatch):
    node = _node_of_eight_h100(monkeypatch)
    monkeypatch.setitem(sys.modules, "pynvml", None)
    run_dir = tmp_path / "run"
    shutil.copytree(pkg_lg["Offline"], run_dir)
    record = json.loads((run_dir / "run.json").read_text())
    record["sut"] = {
        "workers": 2,
        "per_worker": [{"node": "gpu", "node_ip": ip, "samples": 40, "alive": True} for ip in ("10.1.0.1", "10.1.0.2")],
        "nodes": [_at(node, "10.1.0.1"), _at(node, "10.1.0.2")],
    }
    (run_dir / "run.json").write_text(json.dumps(record))
    tree = tmp_path / "tree"
    args = ["package", "--from", str(run_dir), "--submitter", "TeamX", "--division", "open", "--out", str(tree)]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    (path,) = tree.glob("open/TeamX/systems/*.json")
    system = json.loads(path.read_text())
    assert (system["number_of_nodes"], system["accelerators_per_node"]) == (2, 8)
    assert system["accelerator_model_name"] == "NVIDIA H100 80GB HBM3"
    assert path.stem.startswith("8xNVIDIA_H100_80GB_HBM3_")  # named after the nodes, not the packaging machine
