"""A system description joining the tree: how many nodes a run had (only nodes that answered, hosts told apart by
their address), and what happens to a description already there (widened, kept, refused or replaced)."""

from __future__ import annotations

import json

import pytest

from subtool.errors import SubtoolError
from subtool.package.system import SystemDescription
from subtool.package.system_merge import merged_fields, run_nodes, stage_system


def _imp(per_worker, bench=None):
    return type("Imp", (), {"run": {"sut": {"per_worker": per_worker}}, "bench": bench})()


def test_a_worker_that_answered_no_sample_adds_no_node():
    workers = [{"node": "a", "node_ip": "10.0.0.1", "samples": 5}, {"node": "b", "node_ip": "10.0.0.2", "samples": 0}]
    assert run_nodes(_imp(workers)) == 1
    workers[1]["samples"] = 1
    assert run_nodes(_imp(workers)) == 2


def test_two_hosts_of_one_name_are_two_nodes():
    workers = [{"node": "gpu", "node_ip": "10.0.0.1"}, {"node": "gpu", "node_ip": "10.0.0.2"}]
    assert run_nodes(_imp(workers)) == 2


def test_number_of_nodes_never_shrinks_below_what_the_tree_says():
    from subtool.mlperf.benchmarks import BENCHMARKS

    imp = _imp([{"node": "a", "node_ip": "10.0.0.1"}], bench=BENCHMARKS["bert-99"])
    assert merged_fields({"number_of_nodes": "4", "system_type": "edge"}, [imp]) == {
        "system_type": "edge",
        "number_of_nodes": 4,
    }


BASE = {"system_name": "box", "system_type": "edge", "number_of_nodes": 1, "cooling": "air"}


def _stage(tmp_path, current: dict | None, fields: dict, *, system_file=None, force=False):
    rel = "closed/T/systems/box.json"
    target = tmp_path / rel
    if current is not None:
        target.parent.mkdir(parents=True)
        target.write_text(json.dumps(current))
    notes = stage_system(
        tmp_path, rel, SystemDescription(fields=fields), out=tmp_path, system_file=system_file, force=force
    )
    return notes, json.loads(target.read_text())


def test_only_the_widened_fields_differ_the_description_is_updated(tmp_path):
    notes, written = _stage(tmp_path, BASE, {**BASE, "number_of_nodes": 2, "system_type": "datacenter,edge"})
    assert written == {**BASE, "number_of_nodes": 2, "system_type": "datacenter,edge"}
    assert len(notes) == 1 and notes[0].startswith("updated closed/T/systems/box.json")


def test_a_description_that_differs_is_kept_and_only_widened(tmp_path):
    notes, written = _stage(tmp_path, BASE, {**BASE, "cooling": "liquid", "number_of_nodes": 2})
    assert written == {**BASE, "number_of_nodes": 2}  # the user's cooling stays
    assert notes[0] == "kept the existing closed/T/systems/box.json (detected values not applied)"
    assert len(notes) == 2 and notes[1].startswith("updated")


def test_force_without_a_system_file_replaces_nothing(tmp_path):
    notes, written = _stage(tmp_path, BASE, {**BASE, "cooling": "liquid"}, force=True)
    assert written == BASE and notes[0].startswith("kept the existing")


def test_a_system_file_that_differs_from_the_tree_is_refused_without_force(tmp_path):
    with pytest.raises(SubtoolError) as err:
        _stage(tmp_path, BASE, {**BASE, "cooling": "liquid", "number_of_nodes": 2}, system_file=tmp_path / "s.toml")
    assert err.value.rule == "package.system_exists"
    assert json.loads((tmp_path / "closed/T/systems/box.json").read_text()) == BASE  # nothing was changed


def test_a_system_file_with_force_replaces_the_description(tmp_path):
    new = {**BASE, "cooling": "liquid", "number_of_nodes": 2}
    notes, written = _stage(tmp_path, BASE, new, system_file=tmp_path / "s.toml", force=True)
    assert written == new and notes == ["replaced closed/T/systems/box.json (--force with --system-file)"]


def test_a_node_record_keeps_only_short_text_or_whole_numbers_of_the_per_node_fields():
    from subtool.package.system_merge import MAX_NODE_VALUE, recorded_nodes

    fields = {
        "accelerators_per_node": 8,
        "accelerator_model_name": "H100",
        "host_processors_per_node": True,  # a boolean is no count
        "host_memory_capacity": "x" * (MAX_NODE_VALUE + 1),
        "operating_system": "y" * MAX_NODE_VALUE,
        "submitter": "Mallory",  # not a per-node field: a node never describes the submitter
        "division": "closed",
    }
    imp = type("Imp", (), {"run": {"sut": {"nodes": [{"node_ip": "10.0.0.1", "fields": fields}], "per_worker": []}}})()
    (node,) = recorded_nodes([imp])
    assert node["where"] == "10.0.0.1"
    assert node["fields"] == {
        "accelerators_per_node": 8,
        "accelerator_model_name": "H100",
        "operating_system": "y" * MAX_NODE_VALUE,
    }


def test_a_field_the_packaging_machine_could_not_detect_is_no_longer_guessed_once_the_nodes_agree():
    from subtool.package.system import NOT_DETECTED
    from subtool.package.system_merge import with_recorded_nodes

    desc = SystemDescription(
        fields={"accelerator_model_name": NOT_DETECTED, "cooling": ""}, guessed=["cooling", "accelerator_model_name"]
    )
    nodes = [{"node_ip": ip, "fields": {"accelerator_model_name": "H100"}} for ip in ("10.0.0.1", "10.0.0.2")]
    imp = type("Imp", (), {"run": {"sut": {"nodes": nodes, "per_worker": []}}})()
    merged = with_recorded_nodes(desc, [imp])
    assert merged.fields["accelerator_model_name"] == "H100"
    assert merged.guessed == ["cooling"]


def _unblock_later(fifo, after_s: float):
    """After `after_s`, give each reader blocked on the FIFO a byte and an end (so a reader that blocks ends,
    late, rather than hang the test); a no-op when nobody reads it."""
    import os
    import threading
    import time

    def writer():
        time.sleep(after_s)
        for _ in range(100):  # every read that blocks, for 10 s
            try:
                fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
            except OSError:  # ENXIO: no reader waits now
                time.sleep(0.1)
                continue
            os.write(fd, b"x")
            os.close(fd)
            time.sleep(0.1)

    threading.Thread(target=writer, daemon=True).start()


def _stage_over_existing(tmp_path) -> list[str]:
    """package's staging of closed/T/systems/box.json over the one already in the tree at tmp_path: its notes."""
    return stage_system(
        tmp_path,
        "closed/T/systems/box.json",
        SystemDescription(fields=BASE),
        out=tmp_path,
        system_file=None,
        force=False,
    )


def test_a_system_file_in_the_tree_that_is_a_fifo_does_not_block_package(tmp_path):
    import os
    import time

    from subtool.package.system_merge import existing_system

    target = tmp_path / "closed/T/systems/box.json"
    target.parent.mkdir(parents=True)
    os.mkfifo(target)
    _unblock_later(target, 5)
    started = time.monotonic()
    assert existing_system(target) == {}
    notes = _stage_over_existing(tmp_path)
    assert time.monotonic() - started < 4, "the read waited for a writer"
    assert notes == ["kept the existing closed/T/systems/box.json (detected values not applied)"]


def test_a_system_file_in_the_tree_nested_too_deep_is_kept_not_a_crash(tmp_path):
    from subtool.package.system_merge import existing_system

    target = tmp_path / "closed/T/systems/box.json"
    target.parent.mkdir(parents=True)
    target.write_text("[" * 100_000 + "]" * 100_000)  # RecursionError in json.loads: `package` exited 70
    assert existing_system(target) == {}
    notes = _stage_over_existing(tmp_path)
    assert notes == ["kept the existing closed/T/systems/box.json (detected values not applied)"]
