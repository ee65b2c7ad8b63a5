"""The system description: detection on this host, the schema, overrides, `subtool system` and its messages."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from subtool.cli import app
from subtool.errors import SubtoolError
from subtool.package.system import (
    apply_overrides,
    default_system_name,
    detect_system,
    load_overrides,
    parse_set,
    required_fields,
    validate_system,
    validation_errors,
)
from subtool.schemas import load_schema

runner = CliRunner()

# The official checker's SYSTEM_DESC_REQUIRED_FIELDS (v6.1), restated here so that a schema edit that drops
# one fails this test.
OFFICIAL_REQUIRED = {
    "division",
    "submitter",
    "status",
    "system_name",
    "number_of_nodes",
    "host_processor_model_name",
    "host_processors_per_node",
    "host_processor_core_count",
    "host_memory_capacity",
    "host_storage_capacity",
    "host_storage_type",
    "accelerators_per_node",
    "accelerator_model_name",
    "accelerator_memory_capacity",
    "framework",
    "operating_system",
    "system_type",
    "other_software_stack",
    "host_processor_frequency",
    "host_processor_caches",
    "host_memory_configuration",
    "host_processor_interconnect",
    "host_networking",
    "host_networking_topology",
    "accelerator_frequency",
    "accelerator_host_interconnect",
    "accelerator_interconnect",
    "accelerator_interconnect_topology",
    "accelerator_memory_configuration",
    "accelerator_on-chip_memories",
    "cooling",
    "hw_notes",
    "sw_notes",
    "host_network_card_count",
    "system_type_detail",
}


def test_schema_covers_every_official_field():
    assert set(required_fields()) == OFFICIAL_REQUIRED
    schema = load_schema("system_desc")
    assert set(schema["properties"]["status"]["enum"]) >= {"available", "preview", "rdi"}
    assert set(schema["properties"]["system_type"]["enum"]) == {
        "datacenter",
        "edge",
        "datacenter,edge",
        "edge,datacenter",
    }


def test_detected_description_is_valid_and_cpu_only_count_is_a_string():
    desc = detect_system(submitter="TeamX", division="closed")
    assert set(desc.fields) >= OFFICIAL_REQUIRED
    assert validation_errors(desc.fields, division="closed", submitter="TeamX") == []
    with open("/proc/cpuinfo") as fh:
        assert any(desc.fields["host_processor_model_name"] in line for line in fh)
    if desc.fields["accelerators_per_node"] == "0":  # the checker reads the number 0 as empty
        # "N/A" alone would be null in the summary JSON (pandas' missing value) and "N/A" in the CSV
        assert desc.fields["accelerator_model_name"] == "N/A (CPU only)"
    assert desc.fields["host_processor_core_count"] >= 1
    assert "subtool" in desc.fields["other_software_stack"]
    assert "cooling" in desc.guessed


def _imports_torch(path: str) -> bool:
    code = (
        "import sys; from subtool.package.system import detect_system; "
        "detect_system(submitter='x', division='open'); print('torch' in sys.modules)"
    )
    env = {**os.environ, "PATH": path}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env).stdout
    return {"True": True, "False": False}[out.strip()]


def test_detection_never_imports_torch(tmp_path):
    """Packaging never imports torch (docs/architecture.md): without nvidia-smi, GPU names come from
    /proc/driver/nvidia; with it, from its CSV. Either way torch stays out, on a GPU machine as on a CPU one."""
    no_smi = os.pathsep.join(
        d for d in os.environ.get("PATH", "").split(os.pathsep) if d and not (Path(d) / "nvidia-smi").exists()
    )
    assert _imports_torch(no_smi) is False
    # nvidia-smi answering: detection reads it and never needs torch, driver or not
    smi = tmp_path / "bin" / "nvidia-smi"
    smi.parent.mkdir()
    smi.write_text("#!/bin/sh\necho 'NVIDIA H200, 143771, 1980, 5, 16, 570.86'\n")
    smi.chmod(0o755)
    assert _imports_torch(os.pathsep.join([str(smi.parent), no_smi])) is False


def test_messages_name_the_field_and_the_allowed_values():
    fields = detect_system(submitter="TeamX", division="open").fields
    bad = dict(
        fields,
        status="sold",
        system_type="laptop",
        accelerators_per_node=0,
        cooling="",
        number_of_nodes="two",
        division="closed",
    )
    del bad["hw_notes"]
    errors = validation_errors(bad, division="open", submitter="Other")
    assert "field 'status' is 'sold'; allowed values: available, preview, rdi" in errors
    assert (
        "field 'system_type' is 'laptop'; allowed values: datacenter, edge, datacenter,edge, edge,datacenter" in errors
    )
    assert any(e.startswith("field 'accelerators_per_node' is 0") and '"0"' in e for e in errors)
    assert "field 'cooling' is empty; the official checker needs a meaningful value" in errors
    assert any(e.startswith("field 'number_of_nodes' is 'two'; allowed values: a whole number") for e in errors)
    assert "field 'hw_notes' is missing (the official checker requires it)" in errors
    assert any("field 'division' is 'closed'" in e and "allowed values: open" in e for e in errors)
    assert any("field 'submitter' is 'TeamX'" in e and "allowed values: Other" in e for e in errors)
    with pytest.raises(SubtoolError) as exc:
        validate_system(bad, path="systems/x.json")
    assert exc.value.rule == "system.invalid" and "systems/x.json" in exc.value.one_line()


def test_overrides_toml_json_and_set(tmp_path):
    toml = tmp_path / "o.toml"
    toml.write_text('cooling = "liquid"\nnumber_of_nodes = 2\n[measurements]\nweight_data_types = "int8"\n')
    data = load_overrides(toml)
    assert data["cooling"] == "liquid" and data["measurements"] == {"weight_data_types": "int8"}
    js = tmp_path / "o.json"
    js.write_text('{"cooling": "air"}')
    assert load_overrides(js) == {"cooling": "air"}
    js.write_text("{not json")
    with pytest.raises(SubtoolError, match="not valid JSON") as exc:
        load_overrides(js)
    assert exc.value.rule == "system.bad_overrides"
    assert parse_set(["accelerators_per_node=0", "host_networking = 100G IB"]) == {
        "accelerators_per_node": "0",
        "host_networking": "100G IB",
    }
    with pytest.raises(SubtoolError, match="key=value"):
        parse_set(["cooling"])
    desc = apply_overrides(detect_system(submitter="T", division="open"), {"cooling": "air"})
    assert desc.fields["cooling"] == "air" and "cooling" not in desc.guessed


def test_default_system_name_is_a_directory_name():
    name = default_system_name(
        {
            "host_processors_per_node": 2,
            "host_processor_model_name": "Intel(R) Xeon(R) Platinum 8480C CPU @ 2.00GHz",
            "accelerators_per_node": 8,
            "accelerator_model_name": "NVIDIA H100 80GB HBM3",
        }
    )
    assert name == "8xNVIDIA_H100_80GB_HBM3_2xIntel_Xeon_Platinum_8480C"
    assert (
        default_system_name({"host_processor_model_name": "AMD EPYC", "accelerators_per_node": "0"}, demo=True)
        == "1xAMD_EPYC-demo"
    )


# ----------------------------------------------------------------------------------------------- CLI
def test_cli_system_prints_detected_json_with_overrides(tmp_path):
    over = tmp_path / "o.toml"
    over.write_text('cooling = "air"\nhost_memory_configuration = "4x8 GB"\n')
    out = tmp_path / "sys.json"
    r = runner.invoke(
        app,
        [
            "system",
            "--submitter",
            "TeamX",
            "--division",
            "closed",
            "--file",
            str(over),
            "--set",
            "status=preview",
            "--out",
            str(out),
        ],
    )
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    assert (doc["submitter"], doc["division"], doc["status"], doc["cooling"]) == ("TeamX", "closed", "preview", "air")
    assert json.loads(out.read_text()) == doc
    assert "warning" not in r.stderr


def test_cli_system_validate(tmp_path):
    good = tmp_path / "good.json"
    good.write_text(json.dumps(detect_system(submitter="TeamX", division="open").fields))
    r = runner.invoke(app, ["system", "--validate", str(good)])
    assert r.exit_code == 0 and "valid" in r.stderr
    bad = tmp_path / "bad.json"
    fields = json.loads(good.read_text())
    fields.update(status="sold", accelerators_per_node=0)
    bad.write_text(json.dumps(fields))
    r = runner.invoke(app, ["system", "--validate", str(bad)])
    assert r.exit_code == 1
    lines = [ln for ln in r.stderr.splitlines() if ln.startswith("error:")]
    assert len(lines) == 2 and all(str(bad) in ln and "[system.invalid]" in ln for ln in lines)
    assert any("'status' is 'sold'; allowed values: available, preview, rdi" in ln for ln in lines)
    broken = tmp_path / "broken.json"
    broken.write_text("{")
    r = runner.invoke(app, ["system", "--validate", str(broken)])
    assert r.exit_code == 2 and "[system.bad_json]" in r.stderr


def test_cli_system_set_refuses_an_unknown_field(tmp_path):
    out = tmp_path / "sys.json"
    r = runner.invoke(app, ["system", "--submitter", "TeamX", "--set", "nosuchfield=1", "--out", str(out)])
    assert r.exit_code == 2
    assert r.stdout == "" and not out.exists()
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, r.stderr
    assert (
        "'nosuchfield'" in lines[0] and "system_desc.schema.json" in lines[0] and "[system.unknown_field]" in lines[0]
    )
    # a typo of a real field names it
    r = runner.invoke(app, ["system", "--set", "colling=air"])
    assert r.exit_code == 2 and "did you mean cooling" in r.stderr
    # schema fields and the official checker's power/network fields are accepted
    r = runner.invoke(
        app,
        [
            "system",
            "--submitter",
            "TeamX",
            "--set",
            "cooling=air",
            "--set",
            "system_power_capacity=1200",
            "--set",
            "hw_notes=x",
        ],
    )
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["system_power_capacity"] == "1200"


@pytest.mark.parametrize(
    "name, text",
    [
        ("s.json", '{"host_memory_capacity": NaN}'),
        ("s.json", '{"accelerators_per_node": 1e999}'),
        ("s.toml", "host_memory_capacity = nan\n"),
        ("s.toml", "[measurements]\nmax_power = -inf\n"),
    ],
)
def test_a_non_finite_number_in_a_system_file_is_refused_everywhere(tmp_path, name, text):
    # found by probing: `system --file` wrote NaN into the JSON (which is then not JSON), --validate called it
    # valid, package copied it into the tree, and only check objected
    src = tmp_path / name
    src.write_text(text)
    written = runner.invoke(app, ["system", "--file", str(src), "--submitter", "T", "--out", str(tmp_path / "o.json")])
    assert written.exit_code == 2 and "[system.bad_overrides]" in written.output and "finite" in written.output
    assert not (tmp_path / "o.json").exists()
    if name.endswith(".json"):
        checked = runner.invoke(app, ["system", "--validate", str(src)])
        assert checked.exit_code == 2 and "[system.bad_json]" in checked.output and "valid" not in checked.stdout


# ------------------------------------------------------------------ what a probe of `subtool system` found
def _one_error_line(result, rule: str) -> str:
    """The one error line (and its hint) the command printed, whitespace folded; exit status 2, nothing on stdout."""
    errors = [ln for ln in result.stderr.splitlines() if ln.startswith("error:")]
    assert result.exit_code == 2 and len(errors) == 1 and f"[{rule}]" in errors[0], result.output
    assert result.stdout == ""
    return " ".join(result.stderr.split())


@pytest.mark.parametrize(
    "args, says",
    [
        (["--set", "number_of_nodes=-5"], "--set: field 'number_of_nodes'"),
        (["--division", "closed", "--set", "division=bogus"], "--set: field 'division'"),
    ],
)
def test_a_value_the_user_set_that_fails_the_schema_leaves_out_as_it_was(tmp_path, args, says):
    out = tmp_path / "keep.json"
    out.write_text('{"keep": "me"}')
    r = runner.invoke(app, ["system", "--submitter", "TeamX", *args, "--out", str(out)])
    assert says in _one_error_line(r, "system.invalid")
    assert out.read_text() == '{"keep": "me"}' and r.stdout == ""


def test_an_unknown_division_is_a_usage_error_before_anything_runs(tmp_path):
    r = runner.invoke(app, ["system", "--division", "bogus", "--out", str(tmp_path / "o.json")])
    assert "allowed values: closed, open, network" in _one_error_line(r, "cli.usage")
    assert not (tmp_path / "o.json").exists()


@pytest.mark.parametrize(
    "text, says",
    [
        ("cooling = 1979-05-27T07:32:00Z\n", "cooling is a TOML date or time"),
        ("cooling = 07:32:00\n", "cooling is a TOML date or time"),
        ("a = " + "[" * 100_000 + "]" * 100_000 + "\n", "nested too deeply"),
    ],
)
def test_toml_dates_and_deep_nesting_are_refused_naming_the_file(tmp_path, text, says):
    src = tmp_path / "s.toml"
    src.write_text(text)
    line = _one_error_line(runner.invoke(app, ["system", "--file", str(src)]), "system.bad_overrides")
    assert says in line and str(src) in line


@pytest.mark.parametrize(
    "name, text",
    [
        ("twice.json", '{"cooling": "air", "number_of_nodes": 2, "cooling": "liquid"}'),
        ("twice.json", '{"measurements": {"weight_data_types": "fp8", "weight_data_types": "int8"}}'),
        ("twice.toml", 'cooling = "air"\ncooling = "liquid"\n'),
    ],
)
def test_a_key_given_twice_in_an_overrides_file_is_refused_not_last_wins(tmp_path, name, text):
    src = tmp_path / name
    src.write_text(text)
    out = tmp_path / "system.json"
    result = runner.invoke(app, ["system", "--file", str(src), "--out", str(out)])
    line = _one_error_line(result, "system.bad_overrides")
    assert str(src) in line and ("repeats the key" in line or "Cannot overwrite a value" in line)
    assert not out.exists()


def test_a_typo_in_an_overrides_file_is_refused_like_one_in_set(tmp_path):
    src = tmp_path / "typo.json"
    src.write_text('{"cooilng": "air"}')
    line = _one_error_line(runner.invoke(app, ["system", "--file", str(src)]), "system.unknown_field")
    assert "'cooilng'" in line and "did you mean cooling" in line and str(src) in line


def test_an_endless_or_huge_overrides_file_is_refused_unread(tmp_path):
    line = _one_error_line(runner.invoke(app, ["system", "--file", "/dev/zero"]), "system.bad_overrides")
    assert "not a regular file" in line
    big = tmp_path / "big.json"
    big.write_text('{"hw_notes": "' + "x" * (2 << 20) + '"}')
    assert "larger than 1 MiB" in _one_error_line(
        runner.invoke(app, ["system", "--file", str(big)]), "system.bad_overrides"
    )


def test_validate_refuses_options_it_would_ignore(tmp_path):
    good = tmp_path / "good.json"
    good.write_text("{}")
    r = runner.invoke(app, ["system", "--validate", str(good), "--set", "cooling=air", "--out", str(tmp_path / "x")])
    assert "cannot be combined with --set, --out" in _one_error_line(r, "cli.usage")
    assert not (tmp_path / "x").exists()


def test_a_submitter_set_by_an_override_goes_through_the_name_check(tmp_path):
    r = runner.invoke(app, ["system", "--submitter", "Good", "--set", "submitter=../x"])
    assert "--set submitter" in _one_error_line(r, "tree.bad_name")
    src = tmp_path / "s.json"
    src.write_text('{"submitter": "a/b"}')
    assert str(src) in _one_error_line(runner.invoke(app, ["system", "--file", str(src)]), "tree.bad_name")


def test_a_bad_measurements_table_names_its_file(tmp_path):
    src = tmp_path / "m.json"
    src.write_text('{"measurements": [1]}')
    line = _one_error_line(runner.invoke(app, ["system", "--file", str(src)]), "system.bad_overrides")
    assert str(src) in line and "'measurements' must be a table" in line


# ------------------------------------------------------------------ counts no real system has
BIG = "1" + "0" * 300  # 10^300


@pytest.mark.parametrize(
    "field, value, says",
    [
        ("accelerators_per_node", BIG, "is a 301-digit number, more accelerators in one node than any real system"),
        ("accelerators_per_node", "10001", "is 10001, more accelerators in one node than any real system has"),
        ("number_of_nodes", "1000001", "is 1000001, more nodes than any real system has (at most 1,000,000)"),
        ("host_processors_per_node", "5000", "is 5000, more CPU sockets in one node than any real system has"),
        ("host_processor_core_count", BIG, "is a 301-digit number, more cores in one CPU than any real system has"),
        ("number_of_nodes", "9" * 5000, "is a 5000-digit number, more nodes than any real system has"),
        ("accelerators_per_node", "0" * 4000 + "10001", "is 10001, more accelerators in one node than any real"),
    ],
)
def test_set_refuses_a_count_no_real_system_has(tmp_path, field, value, says):
    """The schema took any string of digits: 10^300 accelerators per node were written to --out and passed
    --validate."""
    out = tmp_path / "sys.json"
    r = runner.invoke(app, ["system", "--submitter", "TeamX", "--set", f"{field}={value}", "--out", str(out)])
    line = _one_error_line(r, "system.invalid")
    assert f"--set: field '{field}' {says}" in line and "allowed values: a whole number from" in line
    assert not out.exists()


def test_validate_refuses_counts_no_real_system_has_and_keeps_the_largest_real_ones(tmp_path):
    fields = detect_system(submitter="TeamX", division="open").fields
    largest = {"number_of_nodes": 1_000_000, "accelerators_per_node": "10000", "host_processor_core_count": "100000"}
    assert validation_errors({**fields, **largest, "host_network_card_count": "0"}) == []
    assert validation_errors({**fields, "accelerators_per_node": "0"}) == []  # CPU-only
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({**fields, "accelerators_per_node": 1e300, "number_of_nodes": 10**300}))
    r = runner.invoke(app, ["system", "--validate", str(bad)])
    lines = [ln for ln in r.stderr.splitlines() if ln.startswith("error:")]
    assert r.exit_code == 1 and len(lines) == 2, r.stderr
    assert any("field 'accelerators_per_node' is 1e+300, more accelerators in one node" in ln for ln in lines)
    assert any(
        "field 'number_of_nodes' is a 301-digit number, more nodes than any real system has" in ln for ln in lines
    )
    assert all(ln.endswith("[system.invalid]") for ln in lines)


def test_validate_says_a_json_count_of_ten_to_the_25_instead_of_failing_unexpectedly(tmp_path):
    """10^25 stands for a count written as text too long for int(): as a JSON number it was read as such text and
    --validate ended in 'failed unexpectedly' (AttributeError)."""
    fields = detect_system(submitter="TeamX", division="open").fields
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({**fields, "host_processor_core_count": 10**25}))
    r = runner.invoke(app, ["system", "--validate", str(bad)])
    (line,) = [ln for ln in r.stderr.splitlines() if ln.startswith("error:")]
    assert r.exit_code == 1 and line.endswith("[system.invalid]"), r.stderr
    assert "field 'host_processor_core_count' is a 26-digit number, more cores in one CPU" in line
