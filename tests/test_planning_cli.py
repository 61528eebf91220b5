"""The planning commands end to end, as a user runs them (subprocess: exit codes, stdout/stderr, imports)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import yaml

from dsv4ctl.schema import load_plan


def run(*args: str, check: int | None = 0) -> subprocess.CompletedProcess:
    # A bare environment (no user config leaks in), but the caller's PYTHONPATH: the packages under test.
    keep = {k: os.environ[k] for k in ("PYTHONPATH",) if k in os.environ}
    proc = subprocess.run([sys.executable, "-m", "dsv4ctl", *args], capture_output=True, text=True, timeout=120,
                          env={"COLUMNS": "200", "PATH": "/usr/bin:/bin", "PYTHONWARNINGS": "ignore", **keep})
    if check is not None:
        assert proc.returncode == check, proc.stderr
    return proc


def test_plan_rich_summary_names_layers():
    out = run("plan", "--hw", "b200", "--variant", "pro", "--recipe", "balanced").stdout
    assert "b200 / pro / fp4 / balanced" in out
    assert "recipe:balanced.yaml overrides[hw=b200,variant=pro]" in out
    assert "sglang serve" in out and "SGLANG_OPT_DEEPGEMM_MEGA_MOE_NUM_MAX_TOKENS_PER_RANK" in out


def test_plan_json_and_yaml_carry_plan_and_commands():
    data = json.loads(run("plan", "--hw", "gb200", "--variant", "pro", "--recipe", "balanced", "-f", "json").stdout)
    assert [c["node_rank"] for c in data["commands"]] == [0, 1]
    assert data["commands"][0]["argv"][:2] == ["sglang", "serve"]
    assert data["plan"]["provenance"]["tp"].startswith("recipe:balanced.yaml")
    ydata = yaml.safe_load(run("plan", "--hw", "gb200", "--variant", "pro", "--recipe", "balanced", "-f", "yaml").stdout)
    assert ydata["commands"] == data["commands"]


def test_plan_shell_and_env_formats():
    shell = run("plan", "--hw", "h200", "--variant", "flash", "--recipe", "balanced", "-f", "shell",
                "--node0-addr", "10.1.1.1").stdout
    assert shell.startswith("# role single") and "SGLANG_DSV4_FP4_EXPERTS=0 \\\n" in shell
    assert "sglang serve \\\n" in shell and "--deepep-config '{\"normal_dispatch\"" in shell
    env = run("plan", "--hw", "gb300", "--variant", "pro", "--recipe", "pd-disagg", "-f", "env").stdout
    assert env.count("# role") == 3 and "SGLANG_MOONCAKE_CUSTOM_MEM_POOL=True" in env


def test_plan_file_written_and_read_back_unchanged(tmp_path):
    path = tmp_path / "plan.yaml"
    proc = run("plan", "--hw", "b200", "--variant", "pro", "--recipe", "max-throughput", "--megamoe", "w4a4",
               "--set", "max_running_requests=512", "-o", str(path))
    assert "wrote" in proc.stderr and proc.stdout == ""
    plan = load_plan(path)
    assert plan.keys.megamoe == "w4a4" and plan.keys.max_running_requests == 512
    assert plan.provenance["max_running_requests"] == "--set max_running_requests=512"


def test_explain_command_and_plan_explain():
    out = run("explain", "mem_fraction_static", "--hw", "gb300", "--variant", "pro", "--recipe", "balanced",
              "--set", "mem_fraction_static=0.85").stdout
    assert "recipe:balanced.yaml overrides[hw=gb300,variant=pro]" in out and "won: --set mem_fraction_static=0.85" in out
    out2 = run("plan", "--hw", "b200", "--explain", "spec_draft_tokens").stdout
    assert "derived: spec_steps × spec_topk + 1" in out2


def test_listings_and_schema():
    profiles = json.loads(run("profiles", "list", "-f", "json").stdout)
    assert {p["name"] for p in profiles} >= {"h100", "h200", "b200", "b300", "gb200", "gb300", "mi300x", "mi355x", "cpu"}
    assert all(p["summary"] for p in profiles)
    recipes = {r["name"] for r in json.loads(run("recipes", "list", "-f", "json").stdout)}
    assert recipes == {"low-latency", "balanced", "max-throughput", "cp", "pd-disagg"}
    shown = yaml.safe_load(run("profiles", "show", "gb300").stdout)
    assert shown["mnnvl"] is True and shown["gpus_per_node"] == 4
    assert yaml.safe_load(run("recipes", "show", "cp").stdout)["keys"]["prefill_cp"] is True
    schema = json.loads(run("schema", "launch-plan").stdout)
    assert "provenance" in schema["properties"]


@pytest.mark.parametrize("args,needle", [
    (("plan", "--hw", "b20"), "did you mean 'b200'"),
    (("plan", "--hw", "b200", "--recipe", "fast"), "--recipe"),
    (("plan", "--hw", "b200", "--set", "tp=abc"), "field 'tp'"),
    (("plan", "--hw", "b200", "--megamoe", "w9"), "--megamoe"),
    (("plan", "--hw", "b200", "-f", "xml"), "unknown format 'xml'"),
    (("explain", "tpp", "--hw", "b200"), "did you mean 'tp'"),
    (("profiles", "show", "h300"), "did you mean"),
])
def test_bad_input_exit_2_one_line(args, needle):
    proc = run(*args, check=2)
    assert needle in proc.stderr and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_plan_never_imports_torch():
    code = ("import sys\nfrom dsv4ctl.cli import main\n"
            "try:\n    main(['plan','--hw','b200','--variant','pro','--recipe','balanced','-f','json'])\n"
            "except SystemExit:\n    pass\n"
            "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'numpy', 'transformers'))\n"
            "print('HEAVY', heavy, file=sys.stderr)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert "HEAVY []" in proc.stderr, proc.stderr[-2000:]


def test_help_on_every_planning_command():
    for cmd in (["plan"], ["explain"], ["schema"], ["profiles", "list"], ["recipes", "show"], ["variants", "list"]):
        assert "Usage" in run(*cmd, "--help").stdout
