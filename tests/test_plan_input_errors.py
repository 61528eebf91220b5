"""Hostile and broken input to the plan commands (issue 21 #3, #4, #6, #11 and the one-line cases):
each gives one line naming the file or option, exit 2 — never a traceback, a shell command run,
a file outside the catalog read, or unbounded memory."""

from __future__ import annotations

import os
import stat
import subprocess

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dsv4ctl.pipeline import PlanRequest, make_plan
from dsv4ctl.schema import dump_plan
from test_pipeline import cli

COMMANDS = (("validate",), ("render", "-t", "sglang", "--plan"), ("serve", "--engine", "sglang", "--dry-run", "--plan"))


def _plan_data() -> dict:
    return _PLAN.model_dump(mode="json")


_PLAN = make_plan(PlanRequest(hw="h200", variant="flash")).plan


def _bomb(levels: int = 9) -> str:
    """A billion-laughs document: a few hundred bytes, 10**9 values once expanded."""
    lines = ["  a: &a [x, x, x, x, x, x, x, x, x, x]"]
    for i in range(1, levels + 1):
        prev, name = chr(96 + i), chr(97 + i)
        lines.append(f"  {name}: &{name} [{', '.join([f'*{prev}'] * 10)}]")
    return "\n".join(lines)


def _write(tmp_path, case: str):
    path = tmp_path / f"{case}.yaml"
    data = _plan_data()
    text = {
        "binary": None, "utf16": None,
        "list": "- hardware: h200\n- variant: flash\n",
        "scalar": "42\n",
        "python_tag": "hardware: !!python/object/apply:os.system ['touch PWNED']\n",
        "deep": "hardware: " + "[" * 100_000 + "]" * 100_000 + "\n",
    }.get(case)
    if case == "binary":
        path.write_bytes(bytes(range(256)) * 4)
    elif case == "utf16":
        path.write_text(yaml.safe_dump(data), encoding="utf-16")
    elif text is not None:
        path.write_text(text)
    else:
        _edit(data, case)
        body = yaml.safe_dump(data, sort_keys=False)
        path.write_text(body.replace("sizing:\n", "sizing:\n" + _bomb() + "\n", 1) if case == "alias_bomb" else body)
    return path


def _edit(data: dict, case: str) -> None:
    if case == "tp_top":
        data["keys"]["tp"] = "eight"
    elif case == "tp_role":
        data["roles"][0]["keys"] = {"tp": "eight"}
    elif case == "missing":
        del data["gpus_per_node"]
    elif case == "unknown":
        data["gpu_count"] = 8
    elif case == "env_name":
        data["env"]["X$(touch PWNED)"] = "1"
    elif case == "nodes":
        data["nodes"] = 10**20


CASES = {
    "binary": "not a UTF-8 text file", "utf16": "not a UTF-8 text file", "list": "must be a mapping",
    "scalar": "must be a mapping", "python_tag": "python/object/apply", "deep": "nested deeper than",
    "alias_bomb": "once aliases are expanded", "tp_top": "field 'keys.tp'", "tp_role": "key 'tp'",
    "missing": "field 'gpus_per_node': Field required", "unknown": "field 'gpu_count'",
    "env_name": "String should match pattern", "nodes": "field 'nodes'",
}


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: c[0])
@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_plan_file_is_one_line(capsys, tmp_path, monkeypatch, case, command):
    monkeypatch.chdir(tmp_path)
    path = _write(tmp_path, case)
    code, out, err = cli(capsys, *command, str(path))
    assert code == 2 and "Traceback" not in err, err
    assert len(err.strip().splitlines()) == 1 and CASES[case] in err and path.name in err, err
    assert not (tmp_path / "PWNED").exists()


def test_hardware_names_resolve_only_inside_the_catalog(capsys, tmp_path):
    """`hardware: ../x/evil` names no profile: no file outside hardware_profiles/ is read, and render
    runs validate's rules (HARDWARE-UNKNOWN) before anything is rendered."""
    from dsv4ctl.paths import hardware_profiles_dir

    evil = tmp_path / "evil.yaml"
    evil.write_text(yaml.safe_dump({**yaml.safe_load((hardware_profiles_dir() / "h200.yaml").read_text()),
                                    "name": "evil", "images": {"sglang": "evil/image:latest"}}))
    data = _plan_data()
    data["hardware"] = os.path.relpath(tmp_path / "evil", hardware_profiles_dir())
    path = tmp_path / "plan.yaml"
    path.write_text(yaml.safe_dump(data))
    code, out, err = cli(capsys, "render", "-t", "docker", "--plan", str(path))
    assert code == 2 and "HARDWARE-UNKNOWN" in err and out == ""
    code, out, err = cli(capsys, "render", "-t", "docker", "--plan", str(path), "--force")
    assert code == 0 and "evil/image" not in out and "lmsysorg/sglang" in out


def test_env_names_are_refused_at_the_schema_and_at_set(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, out, err = cli(capsys, "plan", "--hw", "h200", "--set", "env.X$(touch PWNED)=1", "-f", "shell")
    assert code == 2 and out == "" and "not an environment variable name" in err
    assert len(err.strip().splitlines()) == 1 and not (tmp_path / "PWNED").exists()


def test_every_shell_token_is_quoted(capsys, tmp_path):
    """A hostile env value (valid name) is data, not code, in every shell output we print."""
    data = _plan_data()
    data["env"]["EVIL"] = "$(touch PWNED)`touch PWNED`;touch PWNED"
    path = tmp_path / "plan.yaml"
    path.write_text(yaml.safe_dump(data))
    stub = tmp_path / "bin"
    stub.mkdir()
    for name in ("sglang", "docker", "srun"):
        (stub / name).write_text("#!/bin/sh\nexit 0\n")
        (stub / name).chmod(stat.S_IRWXU)
    for target in ("sglang", "docker"):
        code, script, err = cli(capsys, "render", "-t", target, "--plan", str(path), "--force")
        assert code == 0, err
        proc = subprocess.run(["bash", "-c", script], cwd=tmp_path, capture_output=True, text=True,
                              env={"PATH": f"{stub}:/usr/bin:/bin", "HOME": str(tmp_path), "NODE0_ADDR": "x"})
        assert proc.returncode == 0, (target, proc.stderr)
        assert not (tmp_path / "PWNED").exists(), target


def test_long_set_value_is_one_short_line(capsys):
    code, out, err = cli(capsys, "plan", "--hw", "h200", "--set", "context_length=" + "9" * 5000, "-f", "json")
    assert code == 2 and "field 'context_length'" in err and len(err) < 400 and "Traceback" not in err


def test_nodes_is_bounded_by_the_schema(capsys):
    code, out, err = cli(capsys, "plan", "--hw", "h200", "--nodes", "99999999999999999999", "-f", "json")
    assert code == 2 and "--nodes" in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("target", ["/nonexistent/x.yaml", "DIR", "/dev/full", "", "nodir/x.yaml"])
@pytest.mark.parametrize("command", ["plan", "render"])
def test_unwritable_output_is_one_line(capsys, tmp_path, monkeypatch, target, command):
    monkeypatch.chdir(tmp_path)
    if target == "/dev/full" and not os.path.exists("/dev/full"):
        pytest.skip("no /dev/full here")
    target = str(tmp_path) if target == "DIR" else target
    plan = tmp_path / "good.yaml"
    dump_plan(make_plan(PlanRequest(hw="h200", variant="flash")).plan, plan)
    args = (["plan", "--hw", "h200", "-o", target] if command == "plan"
            else ["render", "-t", "docker", "--plan", str(plan), "-o", target])
    code, out, err = cli(capsys, *args)
    assert code == 2 and "--output" in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err, err


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(st.one_of(
    st.binary(max_size=400),
    st.text(max_size=400).map(str.encode),
    st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=8),
                 lambda kids: st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=8), kids, max_size=4),
                 max_leaves=20).map(lambda d: yaml.safe_dump(d).encode()),
    st.builds(lambda key, value: _good_text().replace("tp: ", f"{key}: {value}\n  tp: ", 1).encode(),
              st.sampled_from(["tp", "bogus", "env", "roles", "nodes", "keys"]),
              st.sampled_from(["eight", "-1", "[]", "{}", "null", "1e999", "&a [*a]", "!!binary AAAA"])),
))
def test_fuzzed_plan_files_load_or_fail_in_one_line(tmp_path_factory, data):
    """Whatever the bytes, loading a plan file gives a plan or one UserError line (issue 21's fuzz)."""
    from dsv4ctl.errors import UserError
    from dsv4ctl.schema import load_plan

    path = tmp_path_factory.mktemp("fuzz") / "plan.yaml"
    path.write_bytes(data)
    try:
        load_plan(path)
    except UserError as exc:
        assert "\n" not in exc.one_line() and "plan.yaml" in exc.one_line()


def _good_text() -> str:
    return yaml.safe_dump(_plan_data(), sort_keys=False)


def test_a_failed_write_leaves_the_old_file_whole(tmp_path, monkeypatch):
    """-o replaces a file whole or not at all (a full disk mid-write keeps the old plan)."""
    import errno
    from pathlib import Path

    from dsv4ctl.errors import UserError
    from dsv4ctl.files import write_text

    target = tmp_path / "plan.yaml"
    target.write_text("old plan\n")
    real = Path.write_text

    def full(self, data, *args, **kwargs):
        real(self, data[: len(data) // 2], *args, **kwargs)
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Path, "write_text", full)
    with pytest.raises(UserError, match="No space left"):
        write_text(target, "new plan " * 100)
    monkeypatch.undo()
    assert target.read_text() == "old plan\n" and [p.name for p in tmp_path.iterdir()] == ["plan.yaml"]
