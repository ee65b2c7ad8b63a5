"""System description edges: a value nested in a list of an overrides file is held to JSON too, the default name
never carries a path separator nor a CPU-only accelerator, and the official checker's power and network fields
are fields one may set."""

from __future__ import annotations

import json

import pytest

from subtool.errors import SubtoolError
from subtool.package.system import NETWORK_FIELDS, POWER_FIELDS, default_system_name, load_overrides, parse_set


@pytest.mark.parametrize(
    "text, says",
    [
        ("other_hardware = [1.0, nan]\n", "other_hardware[1] is nan"),
        ("other_hardware = [[inf]]\n", "other_hardware[0][0] is inf"),
        ("other_hardware = [1979-05-27]\n", "other_hardware[0] is a TOML date"),
    ],
)
def test_a_non_json_value_inside_a_list_of_an_overrides_file_is_refused(tmp_path, text, says):
    src = tmp_path / "s.toml"
    src.write_text(text)
    with pytest.raises(SubtoolError) as err:
        load_overrides(src)
    assert err.value.rule == "system.bad_overrides" and says in err.value.message, err.value.message


@pytest.mark.parametrize("accelerator", ["N/A", "", None])
def test_a_cpu_only_host_is_named_after_its_processor_alone(accelerator):
    fields = {"host_processors_per_node": 2, "host_processor_model_name": "AMD EPYC 9654", "accelerators_per_node": 1}
    if accelerator is not None:
        fields["accelerator_model_name"] = accelerator
    assert default_system_name(fields) == "2xAMD_EPYC_9654"


def test_the_detected_cpu_only_accelerator_does_not_name_the_system():
    from subtool.hostinfo.fields import CPU_ONLY_ACCELERATOR

    fields = {"host_processor_model_name": "AMD EPYC", "accelerators_per_node": "1"}
    assert default_system_name({**fields, "accelerator_model_name": CPU_ONLY_ACCELERATOR}) == "1xAMD_EPYC"


def test_the_default_system_name_holds_no_path_separator():
    name = default_system_name(
        {
            "host_processor_model_name": "../../etc/Intel\\Xeon",
            "accelerators_per_node": "1",
            "accelerator_model_name": "GPU/../../x",
        }
    )
    assert "/" not in name and "\\" not in name and not name.startswith(".")
    assert name == "1xGPU_.._.._x_1x.._.._etc_Intel_Xeon"


@pytest.mark.parametrize("name", [*POWER_FIELDS, *NETWORK_FIELDS])
def test_every_power_and_network_field_of_the_official_checker_may_be_set(name):
    assert parse_set([f"{name}=x"]) == {name: "x"}


def test_the_official_checkers_power_and_network_fields_are_all_known():
    # some of them restated here, so that dropping one from the lists fails a test
    assert {"system_power_only", "system_power_capacity", "power_supply_quantity_and_rating_watts"} <= set(POWER_FIELDS)
    assert {"is_network", "network_type", "network_media", "nic_loadgen", "nic_sut"} <= set(NETWORK_FIELDS)


def test_an_overrides_file_nested_thousands_deep_is_one_line_not_a_recursion_error(tmp_path):
    """TOML's dotted tables nest without recursing in tomllib; the JSON check that walked them recursed."""
    from subtool.errors import SubtoolError
    from subtool.package.system import load_overrides

    deep = tmp_path / "deep.toml"
    deep.write_text("[" + ".".join(["cooling"] + ["a"] * 5000) + "]\nx = 1\n")
    with pytest.raises(SubtoolError) as err:
        load_overrides(deep)
    assert err.value.rule == "system.bad_overrides" and "nested too deeply" in err.value.message


def test_a_huge_refused_value_is_quoted_cut_short_in_its_error_line():
    from subtool.package.system import validation_errors

    problems = validation_errors({"cooling": {"k": "x" * 500_000}, "accelerators_per_node": "y" * 500_000})
    assert problems and all(len(p) < 400 for p in problems), [len(p) for p in problems]
    assert any(p.startswith("field 'cooling' is {'k': 'xxx") and "..." in p for p in problems), problems


@pytest.mark.parametrize("value", ["Air\nSigned-off-by: x", "H100\x1b[31m", "gpu\u202e001", "Air\u2028# Signed-off"])
def test_a_system_value_with_a_control_character_is_refused(value):
    """It went into systems/*.json, the README tables and the .md report as written; a no-break space is fine."""
    from subtool.package.system import validation_errors

    problems = validation_errors({"accelerator_model_name": value})
    assert any(p.startswith("field 'accelerator_model_name' holds a line break or another control") for p in problems)
    fine = validation_errors({"accelerator_model_name": "H100\u00a0SXM"})
    assert not any("accelerator_model_name" in p for p in fine), fine


def test_a_lone_surrogate_set_from_json_is_refused_and_nothing_written(tmp_path):
    """JSON's "\\ud800" alone read as text no UTF-8 file holds: `pack` failed writing its report (exit 70)."""
    from typer.testing import CliRunner

    from subtool.cli import app

    src, out = tmp_path / "o.json", tmp_path / "system.json"
    src.write_text('{"cooling": "air \\ud800"}', encoding="ascii")
    r = CliRunner().invoke(app, ["system", "--submitter", "TeamX", "--file", str(src), "--out", str(out)])
    assert r.exit_code == 2, r.output
    assert "field 'cooling' holds a lone surrogate" in r.output and "system.invalid" in r.output
    assert not out.exists()
    out.write_text('{"cooling": "\\udfff"}', encoding="ascii")
    r = CliRunner().invoke(app, ["system", "--validate", str(out)])
    assert r.exit_code == 1 and "lone surrogate" in r.output, r.output


@pytest.mark.parametrize(
    "line, says",
    [
        ("hw_notes = 5", "field 'hw_notes' is 5; allowed values: text (a string)"),
        ("sw_notes = true", "field 'sw_notes' is True; allowed values: text (a string)"),
        ("is_network = false", 'field \'is_network\' is False; allowed values: "true" or "false", as a string'),
    ],
)
def test_a_value_the_checker_fails_is_refused_by_system_not_left_to_check(tmp_path, line, says):
    """`system` called these valid, `package` wrote them, and `check` failed the tree (system.notes_not_text,
    system.network_mode)."""
    from typer.testing import CliRunner

    from subtool.cli import app

    src = tmp_path / "o.toml"
    src.write_text(f"{line}\ncooling = 'air'\n")
    r = CliRunner().invoke(app, ["system", "--submitter", "TeamX", "--file", str(src), "--out", str(tmp_path / "s")])
    assert r.exit_code == 2 and says in r.output, r.output
    assert not (tmp_path / "s").exists()


@pytest.mark.parametrize("division, value", [("open", "false"), ("network", "true")])
def test_is_network_of_any_value_asks_for_the_network_fields(tmp_path, division, value):
    from typer.testing import CliRunner

    from subtool.cli import app

    r = CliRunner().invoke(app, ["system", "--submitter", "TeamX", "--division", division, "--set", "cooling=air"])
    fields = json.loads(r.stdout[r.stdout.index("{") : r.stdout.rindex("}") + 1])
    path = tmp_path / "s.json"
    path.write_text(json.dumps({**fields, "is_network": value}))
    r = CliRunner().invoke(app, ["system", "--validate", str(path), "--division", division])
    assert r.exit_code == 1, r.output
    assert f"field 'network_type' is missing (the official checker requires it when is_network is set: '{value}')" in (
        " ".join(r.output.split())
    )


def test_is_network_true_outside_the_network_division_is_refused():
    from subtool.package.system import validation_errors

    problems = validation_errors({"is_network": "true"}, division="closed")
    assert any(p.startswith("field 'is_network' is 'true' in the closed division") for p in problems), problems


def test_a_network_division_system_without_is_network_is_refused_not_left_to_check(tmp_path):
    from typer.testing import CliRunner

    from subtool.cli import app

    args = ["system", "--submitter", "TeamX", "--division", "network", "--set", "cooling=air"]
    r = CliRunner().invoke(app, args)
    assert "field 'is_network' is missing (the official checker requires it in the network division)" in r.output
    r = CliRunner().invoke(app, [*args, "--set", "is_network=false"])
    assert r.exit_code == 2 and "field 'is_network' is 'false' in the network division" in r.output, r.output
