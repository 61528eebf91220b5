"""The plan pipeline (issue 19): one path from inputs to a checked, rendered plan; one exit-code policy
in plan, validate, render and serve; serve's overrides as a `cli` layer; options from the Toggles model."""

from __future__ import annotations

import pytest
import yaml

from dsv4ctl.cli import main
from dsv4ctl.pipeline import CheckedPlan, PlanRequest, RenderOptions, check_plan, make_plan
from dsv4ctl.schema import CliOverrides, Toggles, dump_plan, load_plan

# h200 / pro / fp8 on one node: the weights do not fit (WEIGHTS-EXCEED-HBM, an error finding).
BAD = ("--hw", "h200", "--variant", "pro", "--set", "tp=8", "--nodes", "1")


def cli(capsys, *args: str) -> tuple[int, str, str]:
    """Run the real entry point (user errors become one line and exit 2) and capture its output."""
    try:
        main(list(args))
        code = 0
    except SystemExit as exc:
        code = exc.code or 0
    out, err = capsys.readouterr()
    return code, out, err


def test_make_plan_renders_once_and_rules_read_that_argv(monkeypatch):
    """The flag rule checks the argv the pipeline rendered (here with a flag no SGLang has)."""
    import dsv4ctl.render.sglang as sglang

    calls = []
    real = sglang.render_commands

    def counted(*args, **kwargs):
        calls.append(1)
        cmds = real(*args, **kwargs)
        cmds[0].argv.append("--no-such-flag")
        return cmds

    monkeypatch.setattr(sglang, "render_commands", counted)
    checked = make_plan(PlanRequest(hw="b200", variant="flash"))
    assert len(calls) == 1 and checked.commands[0].argv[-1] == "--no-such-flag"
    assert [f.values["flag"] for f in checked.errors if f.rule == "ENGINE-FLAG-UNKNOWN"] == ["--no-such-flag"]
    assert checked.sizing and checked.plan.findings == checked.findings


def test_render_error_is_a_finding_not_a_traceback():
    plan = make_plan(PlanRequest(hw="b200", variant="flash")).plan.model_copy(update={"engine_version": "9.9"})
    checked = check_plan(plan)
    assert checked.render_error is not None and checked.commands == []
    assert [f.rule for f in checked.errors] == ["ENGINE-RENDER"] and checked.exit_code() == 2


def test_builtin_plans_have_no_sglang_commands():
    checked = make_plan(PlanRequest(hw="cpu", variant="tiny"))
    assert checked.commands == [] and checked.render_error is None and checked.ok


def test_exit_code_policy():
    warn = make_plan(PlanRequest(hw="b200", variant="flash", toggles=Toggles(reasoning_parser="deepseek-r1")))
    assert warn.warnings and warn.ok and warn.exit_code() == 0 and warn.exit_code(strict=True) == 1
    assert isinstance(warn, CheckedPlan)


def test_plan_with_an_error_exits_2_and_names_the_rule(capsys):
    code, out, err = cli(capsys, "plan", *BAD, "-f", "json")
    assert code == 2 and "WEIGHTS-EXCEED-HBM" in err and "--force" in err
    assert yaml.safe_load(out)["plan"]["findings"]  # the data still printed


def test_plan_o_with_errors_writes_the_file_and_says_so(capsys, tmp_path):
    path = tmp_path / "p.yaml"
    code, out, err = cli(capsys, "plan", *BAD, "-o", str(path))
    assert code == 2 and path.is_file() and "has 1 error finding" in err and out == ""
    assert load_plan(path).findings[0].rule == "WEIGHTS-EXCEED-HBM"


def test_force_goes_on_and_says_so(capsys, tmp_path):
    code, _, err = cli(capsys, "plan", *BAD, "-f", "json", "--force")
    assert code == 0 and "--force" in err and "WEIGHTS-EXCEED-HBM" in err


def test_warnings_change_nothing_unless_strict(capsys):
    args = ("plan", "--hw", "b200", "--reasoning-parser", "deepseek-r1", "-f", "json")
    assert cli(capsys, *args)[0] == 0
    code, _, err = cli(capsys, *args, "--strict")
    assert code == 1 and "PARSER-NOT-V4" in err


def test_render_refuses_a_plan_with_errors_unless_forced(capsys, tmp_path):
    path = tmp_path / "p.yaml"
    cli(capsys, "plan", *BAD, "-o", str(path))
    code, out, err = cli(capsys, "render", "-t", "sglang", "--plan", str(path))
    assert code == 2 and out == "" and "render: the plan fails validation (WEIGHTS-EXCEED-HBM)" in err
    code, out, err = cli(capsys, "render", "-t", "sglang", "--plan", str(path), "--force")
    assert code == 0 and "sglang serve" in out and "--force" in err


def test_serve_refuses_a_plan_with_errors_unless_forced(capsys, tmp_path):
    code, out, err = cli(capsys, "serve", *BAD, "--engine", "sglang", "--dry-run")
    assert code == 2 and "serve: the plan fails validation" in err


def test_findings_print_one_way_everywhere(capsys, tmp_path):
    path = tmp_path / "p.yaml"
    _, _, plan_err = cli(capsys, "plan", *BAD, "-f", "json")
    dump_plan(make_plan(PlanRequest(hw="h200", variant="pro", sets=("tp=8",),
                                    toggles=Toggles(nodes=1))).plan, path)
    _, validate_out, _ = cli(capsys, "validate", str(path))
    _, _, render_err = cli(capsys, "render", "-t", "sglang", "--plan", str(path))
    line = next(ln for ln in plan_err.splitlines() if ln.startswith("error WEIGHTS-EXCEED-HBM"))
    assert line in validate_out.splitlines() and line in render_err.splitlines()


def test_serve_overrides_are_a_cli_layer_explain_shows(capsys):
    code, out, _ = cli(capsys, "explain", "port", "--hw", "b200", "--variant", "flash", "--port", "9001")
    assert code == 0 and "cli:--port" in out and "9001" in out
    plan = make_plan(PlanRequest(hw="b200", variant="flash", sets=("port=7000",),
                                 cli=CliOverrides(host="127.0.0.1", port=9001, model_path="/m"))).plan
    assert (plan.keys.port, plan.keys.host, plan.keys.model_path) == (9001, "127.0.0.1", "/m")
    assert plan.provenance["port"] == "cli:--port" and plan.provenance["host"] == "cli:--host"


def test_cli_port_moves_the_pd_router():
    plan = make_plan(PlanRequest(hw="h200", variant="flash", recipe="pd-disagg", cli=CliOverrides(port=9100))).plan
    assert plan.role("router").port == 9100 and plan.provenance["role.router.port"] == "cli:--port"
    assert plan.role("prefill").port != 9100


def test_cli_layer_on_a_plan_file(tmp_path):
    from dsv4ctl.resolve.cli import apply_cli_to_plan

    plan = make_plan(PlanRequest(hw="b200", variant="flash")).plan
    moved = apply_cli_to_plan(plan, CliOverrides(port=9002, served_model_name="m"))
    assert moved.keys.port == 9002 and moved.provenance["served_model_name"] == "cli:--served-model-name"
    assert apply_cli_to_plan(plan, CliOverrides()) is plan


def test_every_toggle_is_an_option_of_plan_explain_and_serve():
    """The options come from the Toggles model: a field added there is an option everywhere."""
    import inspect

    from dsv4ctl.commands.planning import explain, plan
    from dsv4ctl.commands.serving import serve

    for command in (plan, explain, serve):
        names = set(inspect.signature(command).parameters)
        assert set(Toggles.model_fields) <= names, command
    assert set(CliOverrides.model_fields) <= set(inspect.signature(serve).parameters)


def test_render_options_reach_the_commands():
    checked = make_plan(PlanRequest(hw="gb200", variant="pro", render=RenderOptions(node0_addr="10.9.9.9")))
    assert "10.9.9.9:20000" in checked.commands[0].argv


@pytest.mark.parametrize("key", ["keys", "roles"])
def test_role_keys_are_partial_engine_keys(key, tmp_path):
    """A role's keys are checked as EngineKeys fields, so rules never see a string tp."""
    from dsv4ctl.errors import UserError

    plan = make_plan(PlanRequest(hw="h200", variant="flash", recipe="pd-disagg")).plan
    data = yaml.safe_load(yaml.safe_dump(plan.model_dump(mode="json")))
    if key == "keys":
        data["keys"]["tp"] = "eight"
    else:
        data["roles"][1]["keys"]["tp"] = "eight"
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(UserError) as info:
        load_plan(path)
    assert "p.yaml" in info.value.one_line() and "tp" in info.value.one_line()


def test_each_toggle_is_a_key_or_handled_by_name():
    """A new Toggles field either sets the EngineKeys field of its name or is handled explicitly."""
    from dsv4ctl.resolve.toggles import INPUTS, SPECIAL
    from dsv4ctl.schema import KEY_NAMES

    for name in Toggles.model_fields:
        assert name in SPECIAL or name in INPUTS or name in KEY_NAMES, name


def test_explain_shows_the_router_port_layers(capsys):
    code, out, _ = cli(capsys, "explain", "port", "--hw", "h200", "--recipe", "pd-disagg", "--role", "router",
                       "--port", "9100")
    assert code == 0 and "ports.router" in out and "cli:--port" in out and "final: 9100" in out
