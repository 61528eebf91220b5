"""Kubernetes manifest: one LeaderWorkerSet per engine role (leader = node rank 0, workers = the
other ranks, one pod per node), a Service in front of each role's leader, and a Deployment for the
PD router. The container args are the plan's argv; only the rendezvous host and the node rank
become LWS variables ($(LWS_LEADER_ADDRESS), $(LWS_WORKER_INDEX)), which Kubernetes expands."""

from __future__ import annotations

from typing import Any

from dsv4ctl.render.sglang import NodeCommand
from dsv4ctl.schema.plan import LaunchPlan
from dsv4ctl.render.topology import (NODE0, by_role, gpus_per_pod, needs_ib, rewrite_router_urls,
                                     set_flag, swap)

LEADER_ADDR = "$(LWS_LEADER_ADDRESS)"
WORKER_INDEX = "$(LWS_WORKER_INDEX)"
# The RDMA shared-device plugin's resource (NVIDIA network operator default); clusters that expose
# HCAs under another name change it here.
IB_RESOURCE = "rdma/rdma_shared_device_a"
LWS_NAME_LABEL = "leaderworkerset.sigs.k8s.io/name"
LWS_INDEX_LABEL = "leaderworkerset.sigs.k8s.io/worker-index"


def _container(argv: list[str], env: dict[str, str], port: int | None, gpus: int, image: str,
               ib: bool, probe: bool) -> dict:
    limits: dict[str, Any] = {"nvidia.com/gpu": gpus} if gpus else {}
    if ib:
        limits[IB_RESOURCE] = 1
    c: dict[str, Any] = {
        "name": "engine", "image": image, "command": argv[:1], "args": argv[1:],
        "env": [{"name": k, "value": v} for k, v in env.items()],
        "resources": {"limits": limits},
        "volumeMounts": [{"name": "dshm", "mountPath": "/dev/shm"},
                         {"name": "hf-cache", "mountPath": "/root/.cache/huggingface"}],
    }
    if ib:  # RDMA memory registration pins pages: IPC_LOCK (docker: --cap-add IPC_LOCK)
        c["securityContext"] = {"capabilities": {"add": ["IPC_LOCK"]}}
    if port:
        c["ports"] = [{"containerPort": port, "name": "http"}]
    if probe and port:
        c["readinessProbe"] = {"httpGet": {"path": "/health", "port": port}, "periodSeconds": 10}
        # Loading a V4 checkpoint and capturing graphs takes many minutes: allow 60 of them.
        c["startupProbe"] = {"httpGet": {"path": "/health", "port": port}, "periodSeconds": 10,
                             "failureThreshold": 360}
    return c


def _pod(container: dict, shm: str) -> dict:
    return {"spec": {"containers": [container], "volumes": [
        {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": shm}},
        {"name": "hf-cache", "hostPath": {"path": "/root/.cache/huggingface", "type": "DirectoryOrCreate"}},
    ]}}


def _lws(plan: LaunchPlan, name: str, role: str, cmds: list[NodeCommand], image: str, shm: str) -> dict:
    gpus, ib = gpus_per_pod(plan, role), needs_ib(plan)
    leader = cmds[0]
    lead_pod = _pod(_container(swap(leader.argv, NODE0, LEADER_ADDR), leader.env, leader.port, gpus, image, ib, True), shm)
    template: dict[str, Any] = {"size": len(cmds), "restartPolicy": "RecreateGroupOnPodRestart"}
    if len(cmds) == 1:
        template["workerTemplate"] = lead_pod  # a group of one: the leader uses the worker template
    else:
        worker = cmds[1]
        argv = set_flag(swap(worker.argv, NODE0, LEADER_ADDR), "--node-rank", WORKER_INDEX)
        template["leaderTemplate"] = lead_pod
        template["workerTemplate"] = _pod(_container(argv, worker.env, worker.port, gpus, image, ib, False), shm)
    return {"apiVersion": "leaderworkerset.x-k8s.io/v1", "kind": "LeaderWorkerSet",
            "metadata": {"name": f"{name}-{role}", "labels": _labels(name, role)},
            "spec": {"replicas": 1, "startupPolicy": "LeaderCreated", "leaderWorkerTemplate": template}}


def _labels(name: str, role: str) -> dict[str, str]:
    return {"app.kubernetes.io/name": name, "app.kubernetes.io/managed-by": "dsv4ctl", "dsv4ctl/role": role}


def _service(name: str, role: str, port: int, selector: dict[str, str]) -> dict:
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": f"{name}-{role}", "labels": _labels(name, role)},
            "spec": {"selector": selector, "ports": [{"name": "http", "port": port, "targetPort": port}]}}


def _router(name: str, cmd: NodeCommand, image: str) -> dict:
    argv = rewrite_router_urls(cmd.argv, lambda role: f"{name}-{role}")
    pod = _pod(_container(argv, cmd.env, cmd.port, 0, image, False, True), "1Gi")
    pod["metadata"] = {"labels": _labels(name, "router")}
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": f"{name}-router", "labels": _labels(name, "router")},
            "spec": {"replicas": 1, "selector": {"matchLabels": _labels(name, "router")}, "template": pod}}


def k8s_objects(plan: LaunchPlan, commands: list[NodeCommand], *, name: str, image: str, shm: str = "32Gi") -> list[dict]:
    """The manifest as a list of objects (tests parse these; `render` dumps them as YAML)."""
    objs: list[dict] = []
    for role, cmds in by_role(commands).items():
        if role == "router":
            objs += [_router(name, cmds[0], image), _service(name, role, cmds[0].port, _labels(name, role))]
            continue
        objs.append(_lws(plan, name, role, cmds, image, shm))
        selector = {LWS_NAME_LABEL: f"{name}-{role}", LWS_INDEX_LABEL: "0"}
        objs.append(_service(name, role, cmds[0].port, selector))
    return objs


def render_k8s(plan: LaunchPlan, commands: list[NodeCommand], *, name: str, image: str) -> str:
    import yaml

    return yaml.safe_dump_all(k8s_objects(plan, commands, name=name, image=image), sort_keys=False)
