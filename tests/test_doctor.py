"""`dsv4ctl doctor`: checks as records over a fake /sys, fake /proc and fake tool outputs; the CLI here."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from dsv4ctl import doctor
from dsv4ctl.cli import app

SMI_CSV = "\n".join(["NVIDIA H200, 143771, 570.86.15"] * 8) + "\n"
SMI_HEAD = "| NVIDIA-SMI 570.86.15   Driver Version: 570.86.15   CUDA Version: 12.8 |\n"
TOPO = "\tGPU0\tGPU1\nGPU0\t X \tNV18\nGPU1\tNV18\t X \n"


def fake_root(tmp_path, ib_state="4: ACTIVE", memlock="unlimited"):
    port = tmp_path / "sys/class/infiniband/mlx5_0/ports/1"
    port.mkdir(parents=True)
    (port / "state").write_text(ib_state + "\n")
    (port / "rate").write_text("400 Gb/sec (4X NDR)\n")
    (port / "link_layer").write_text("InfiniBand\n")
    (tmp_path / "proc/self").mkdir(parents=True)
    (tmp_path / "proc/self/limits").write_text(
        f"Limit                     Soft Limit           Hard Limit           Units\n"
        f"Max locked memory         {memlock}            {memlock}            bytes\n")
    return tmp_path


def fake_run(argv):
    if argv[:2] == ["nvidia-smi", "topo"]:
        return TOPO
    if len(argv) > 1 and argv[1].startswith("--query-gpu"):
        return SMI_CSV
    return SMI_HEAD if argv == ["nvidia-smi"] else None


def by_name(checks):
    return {c.name: c for c in checks}


def pd_plan():
    return doctor.checked_plan("h200", "pro", "pd-disagg")


def test_h200_node_with_ib_reads_every_fact(tmp_path):
    host = doctor.gather(fake_root(tmp_path), run=fake_run, version=lambda d: "1.0" if d == "sglang" else None)
    assert len(host.gpus) == 8 and host.gpus[0].memory_gib == pytest.approx(140.4, abs=0.1)
    assert (host.driver, host.cuda, host.memlock) == ("570.86.15", "12.8", -1)
    checks = by_name(doctor.host_checks(host))
    assert checks["nvlink"].status == "ok" and "NV18" in checks["nvlink"].detail
    assert checks["infiniband"].status == "ok" and checks["memlock"].status == "ok"
    assert doctor.match_profile(host) == "h200"
    plan = by_name(doctor.plan_checks(host, pd_plan()))
    assert plan["plan: gpus"].status == "ok" and plan["plan: rdma"].status == "ok"
    assert plan["plan: packages"].status == "fail" and "deep_ep" in plan["plan: packages"].detail


def test_pd_plan_lists_what_is_missing(tmp_path):
    host = doctor.gather(fake_root(tmp_path, ib_state="1: DOWN", memlock="65536"), run=fake_run,
                         version=lambda d: None)
    plan = by_name(doctor.plan_checks(host, pd_plan()))
    assert plan["plan: rdma"].status == "fail" and "mlx5_0" in plan["plan: rdma"].detail
    assert plan["plan: memlock"].status == "fail" and "unlimited" in plan["plan: memlock"].fix
    assert all(c.fix for c in plan.values() if c.status == "fail")


def test_missing_tools_are_could_not_check(tmp_path):
    host = doctor.gather(tmp_path, run=lambda argv: None, version=lambda d: None, use_torch=False)
    checks = by_name(doctor.host_checks(host))
    assert checks["gpus"].status == "unknown" and "could not check" in checks["gpus"].detail
    assert checks["memlock"].status == "unknown" and checks["shm"].status == "unknown"
    assert doctor.match_profile(host) is None
    plan = by_name(doctor.plan_checks(host, pd_plan()))
    assert plan["plan: gpus"].status == "unknown"


def test_run_tool_never_raises():
    assert doctor.run_tool(["dsv4ctl-no-such-tool", "--x"]) is None


def test_cli_doctor_here_and_against_a_multi_node_ib_plan(tmp_path):
    res = CliRunner().invoke(app, ["doctor", "--format", "json"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.output)
    assert {c["name"] for c in data["checks"]} >= {"gpus", "memlock", "shm", "packages"}
    plan = tmp_path / "pd.yaml"
    made = CliRunner().invoke(app, ["plan", "--hw", "h200", "--variant", "pro", "--recipe", "pd-disagg",
                                    "--nodes", "2", "--force", "-o", str(plan)])
    assert made.exit_code == 0, made.output
    res = CliRunner().invoke(app, ["doctor", "--plan", str(plan), "--format", "json"])
    data = json.loads(res.output)
    failed = {c["name"] for c in data["checks"] if c["status"] == "fail"}
    assert res.exit_code == 1 and {"plan: gpus", "plan: rdma", "plan: packages"} <= failed
