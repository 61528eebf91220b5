"""Kubernetes, Slurm and Docker renderings, tested structurally (no cluster here): they parse, carry
the required fields, put one pod / srun per node, and their args and env equal the plan's."""

from __future__ import annotations

import re
import shlex

import pytest
import yaml

from dsv4ctl.render.topology import NODE0
from dsv4ctl.render import docker, k8s, slurm
from dsv4ctl.render.sglang import render_commands
from dsv4ctl.resolve import resolve_plan

CELLS = [("h200", "flash", "balanced"), ("h200", "pro", "pd-disagg"), ("h100", "pro", "low-latency"),
         ("gb200", "pro", "balanced"), ("h200", "flash", "pd-disagg")]


@pytest.fixture(params=CELLS, ids=["/".join(c) for c in CELLS])
def plan(request):
    return resolve_plan(*request.param)


def commands(plan, addr=NODE0):
    return render_commands(plan, node0_addr=addr)


def engine_roles(plan):
    return [r for r in plan.roles if r.name != "router"]


def test_k8s_one_leaderworkerset_per_role_one_pod_per_node(plan):
    objs = list(yaml.safe_load_all(k8s.render_k8s(plan, commands(plan), name="x", image="img:1")))
    sets = {o["metadata"]["name"]: o for o in objs if o["kind"] == "LeaderWorkerSet"}
    assert set(sets) == {f"x-{r.name}" for r in engine_roles(plan)}
    pods = sum(o["spec"]["leaderWorkerTemplate"]["size"] for o in sets.values())
    assert pods == sum(max(r.nodes, 1) for r in engine_roles(plan))
    if not plan.role("prefill"):
        assert pods == plan.nodes  # one pod per node of the plan
    for role in engine_roles(plan):
        _check_lws(plan, role.name, sets[f"x-{role.name}"])
    services = {o["metadata"]["name"] for o in objs if o["kind"] == "Service"}
    assert services == {f"x-{r.name}" for r in plan.roles}


def _check_lws(plan, role, lws):
    tmpl = lws["spec"]["leaderWorkerTemplate"]
    expected = [c for c in commands(plan, k8s.LEADER_ADDR) if c.role == role]
    leader = (tmpl.get("leaderTemplate") or tmpl["workerTemplate"])["spec"]["containers"][0]
    assert leader["command"] + leader["args"] == expected[0].argv
    assert {e["name"]: e["value"] for e in leader["env"]} == expected[0].env
    assert leader["readinessProbe"]["httpGet"] == {"path": "/health", "port": expected[0].port}
    gpus = leader["resources"]["limits"]["nvidia.com/gpu"]
    assert 1 <= gpus <= plan.gpus_per_node
    ib = k8s.IB_RESOURCE in leader["resources"]["limits"]
    assert ib == ("IPC_LOCK" in str(leader.get("securityContext")))
    assert ib == bool(plan.role_keys(role).ib_device or (plan.nodes > 1 and not plan.keys.mnnvl))
    shm = tmpl["workerTemplate"]["spec"]["volumes"][0]
    assert shm["emptyDir"]["medium"] == "Memory"
    if len(expected) > 1:
        worker = tmpl["workerTemplate"]["spec"]["containers"][0]
        for cmd in expected[1:]:  # the worker template, with this pod's index put in, is that node's argv
            argv = [a.replace(k8s.WORKER_INDEX, str(cmd.node_rank)) for a in worker["command"] + worker["args"]]
            assert argv == cmd.argv
        assert "readinessProbe" not in worker


def test_k8s_pd_router_targets_the_role_services():
    plan = resolve_plan("h200", "flash", "pd-disagg")
    objs = k8s.k8s_objects(plan, commands(plan), name="x", image="img:1")
    router = next(o for o in objs if o["kind"] == "Deployment")
    args = router["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args[args.index("--prefill") + 1] == f"http://x-prefill:{plan.role('prefill').port}"
    assert args[args.index("--decode") + 1] == f"http://x-decode:{plan.role('decode').port}"
    assert "nvidia.com/gpu" not in str(router)
    assert "mlx5_0" in str(objs)  # the IB device flag is the plan's


def srun_lines(script):
    return [ln for ln in script.splitlines() if ln.startswith("srun ")]


def parse_srun(line):
    """(node index, env, argv) of one srun line, with ${NODES[k]} read back as 'nodeK'."""
    words = shlex.split(re.sub(r"\$\{NODES\[(\d+)\]\}", r"node\1", line.rstrip(" &")))
    node = words[1].split("=")[1]
    rest = words[words.index("env") + 1 :]
    env = dict(w.split("=", 1) for w in rest if re.match(r"^[A-Z_][A-Z0-9_]*=", w))
    return node, env, rest[len(env):]


def test_slurm_one_srun_per_node_with_the_plan_argv_and_env(plan):
    script = slurm.render_slurm(plan, commands(plan), name="x")
    assert script.startswith("#!/bin/bash") and f"#SBATCH --nodes={plan.nodes}" in script
    assert f"#SBATCH --gpus-per-node={plan.gpus_per_node}" in script
    lines = srun_lines(script)
    cmds = commands(plan)
    assert len(lines) == len(cmds)
    used = set()
    for line, cmd in zip(lines, sorted(cmds, key=lambda c: (c.role == "router",))):
        node, env, argv = parse_srun(line)
        assert env == cmd.process_env()
        if cmd.role != "router":
            assert argv == [a.replace(NODE0, _leader(plan, cmd.role)) for a in cmd.argv]
            used.add(node)
    assert len(used) == min(plan.nodes, len([c for c in cmds if c.role != "router"]))


def _leader(plan, role):
    """The first node of a role in the allocation: roles take nodes in plan order."""
    first = 0
    for r in plan.roles:
        if r.name == role:
            return f"node{first % plan.nodes}"
        first += max(r.nodes, 1) if r.name != "router" else 0
    raise AssertionError(role)


def test_docker_runs_the_plan_argv_with_its_env():
    plan = resolve_plan("h200", "flash", "pd-disagg")
    runs = docker.docker_commands(plan, commands(plan), name="x", image="img:1")
    assert [c.role for c, _ in runs] == ["prefill", "decode", "router"]
    for cmd, argv in runs:
        image_at = argv.index("img:1")
        assert argv[image_at + 1 :] == cmd.argv
        env = [argv[i + 1] for i, a in enumerate(argv[:image_at]) if a == "--env"]
        assert env == [f"{k}={v}" for k, v in cmd.env.items()]
        assert ("IPC_LOCK" in argv) == (cmd.role != "router")  # PD over IB: mlx5_0
    script = docker.render_docker(plan, commands(plan), name="x", image="img:1")
    assert script.count("docker run") == 3 and shlex.split(script.splitlines()[-1])[0] == "docker"


def test_default_image_follows_the_hardware_profile():
    assert docker.default_image(resolve_plan("h200", "flash", "balanced")) == "lmsysorg/sglang:latest"
    assert docker.default_image(resolve_plan("gb200", "pro", "balanced")) == "lmsysorg/sglang:latest-cu129"


@pytest.mark.parametrize("target", ["k8s", "slurm", "docker", "sglang"])
def test_render_command(tmp_path, target):
    from typer.testing import CliRunner

    from dsv4ctl.cli import app
    from dsv4ctl.schema import dump_plan

    path = tmp_path / "plan.yaml"
    dump_plan(resolve_plan("h100", "pro", "low-latency"), path)
    res = CliRunner().invoke(app, ["render", "--target", target, "--plan", str(path), "-o", str(tmp_path / "out")])
    assert res.exit_code == 0, res.output
    text = (tmp_path / "out").read_text()
    assert "sglang" in text and "--node-rank" in text
    if target == "k8s":
        assert [o["kind"] for o in yaml.safe_load_all(text)] == ["LeaderWorkerSet", "Service"]


# issue 20: a single-node PD plan puts prefill and decode side by side, each on its own GPUs.
SHARED = [("h200", "flash", [0, 1, 2, 3], [4, 5, 6, 7]), ("b200", "flash", [0, 1], [2, 3])]


def _devices(value: str) -> list[int]:
    return [int(g) for g in value.split(",")]


@pytest.mark.parametrize("hw,variant,pre,dec", SHARED)
def test_single_node_pd_roles_get_disjoint_gpus_in_commands(hw, variant, pre, dec):
    from dsv4ctl.render.data import to_env, to_shell
    from dsv4ctl.render.targets import commands_text

    plan = resolve_plan(hw, variant, "pd-disagg")
    assert plan.nodes == 1
    cmds = {c.role: c for c in commands(plan)}
    assert (cmds["prefill"].gpus, cmds["decode"].gpus, cmds["router"].gpus) == (pre, dec, [])
    for text in (to_shell(list(cmds.values())), to_env(list(cmds.values())), commands_text(list(cmds.values()))):
        blocks = [b for b in re.split(r"^# ", text, flags=re.M) if b.strip()]
        words = [shlex.split(b.split("\n", 1)[1].replace("\\\n", " ")) for b in blocks]
        seen = [dict(w.split("=", 1) for w in ws if re.match(r"^[A-Z_]+=", w)) for ws in words]
        assert [_devices(e["CUDA_VISIBLE_DEVICES"]) for e in seen[:2]] == [pre, dec]
        assert "CUDA_VISIBLE_DEVICES" not in seen[2]  # the router claims no GPU


@pytest.mark.parametrize("hw,variant,pre,dec", SHARED)
def test_single_node_pd_roles_get_disjoint_gpus_in_every_target(hw, variant, pre, dec):
    plan = resolve_plan(hw, variant, "pd-disagg")
    runs = docker.docker_commands(plan, commands(plan), name="x", image="img:1")
    gpus = [argv[argv.index("--gpus") + 1] for c, argv in runs if c.role != "router"]
    assert gpus == [f'"device={",".join(map(str, pre))}"', f'"device={",".join(map(str, dec))}"']
    assert all("CUDA_VISIBLE_DEVICES" not in " ".join(argv) for _, argv in runs)  # the container renumbers
    line = next(ln for ln in docker.render_docker(plan, commands(plan), name="x", image="img:1").splitlines()
                if "-prefill-0" in ln)
    assert f"--gpus '\"device={','.join(map(str, pre))}\"'" in line  # docker's CSV needs the inner quotes
    srun = [parse_srun(ln) for ln in srun_lines(slurm.render_slurm(plan, commands(plan), name="x"))]
    assert [_devices(env["CUDA_VISIBLE_DEVICES"]) for _, env, _ in srun[:2]] == [pre, dec]
    objs = k8s.k8s_objects(plan, commands(plan), name="x", image="img:1")
    limits = [o["spec"]["leaderWorkerTemplate"]["workerTemplate"]["spec"]["containers"][0]["resources"]["limits"]
              for o in objs if o["kind"] == "LeaderWorkerSet"]
    assert [lim["nvidia.com/gpu"] for lim in limits] == [len(pre), len(dec)]
    assert "CUDA_VISIBLE_DEVICES" not in str(objs)


@pytest.mark.parametrize("cell", [("gb200", "flash", "pd-disagg"), ("gb200", "pro", "pd-disagg"),
                                  ("h200", "flash", "balanced")])
def test_roles_on_their_own_nodes_keep_the_whole_node(cell):
    from dsv4ctl.sizing.placement import slots

    plan = resolve_plan(*cell)
    assert all(s.first_gpu == 0 and not s.shared for s in slots(plan))
    assert all(c.gpus == [] and c.process_env() == c.env for c in commands(plan))
    runs = docker.docker_commands(plan, commands(plan), name="x", image="img:1")
    assert all(argv[argv.index("--gpus") + 1] == "all" for c, argv in runs if c.role != "router")
    if plan.role("prefill"):
        assert {s.node for s in slots(plan) if s.role == "prefill"}.isdisjoint(
            {s.node for s in slots(plan) if s.role == "decode"})
