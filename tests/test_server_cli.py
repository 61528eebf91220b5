"""`python -m dsv4rt serve`: plan keys and flags map onto EngineConfig; what is not implemented is
refused by name before anything loads; the real entry point serves the tiny checkpoint."""

import subprocess
import sys
import time

import httpx
import pytest
import yaml

from dsv4rt.cli import UsageError, build_parser, engine_config, plan_options, resolve_options
from runtime_server import free_port


def write_plan(tmp_path, keys=None, roles=None):
    from dsv4ctl.launch.assemble import embedded_default_plan
    from dsv4ctl.schema import dump_plan

    path = tmp_path / "plan.yaml"
    dump_plan(embedded_default_plan(), path)
    data = yaml.safe_load(path.read_text())
    data["keys"].update(keys or {})
    if roles is not None:
        data["roles"] = roles
    path.write_text(yaml.safe_dump(data))
    return path


def options(*argv):
    return resolve_options(build_parser().parse_args(["serve", *argv]))


def test_dsv4ctl_default_plan_is_accepted_and_mapped(tmp_path):
    plan = write_plan(tmp_path, {"max_running_requests": 7, "chunked_prefill_size": 128, "context_length": 512,
                                 "mem_fraction_static": 0.8, "reasoning_parser": "deepseek-v4"})
    opts = plan_options(plan)
    assert opts["host"] == "127.0.0.1" and opts["served_model_name"] == "dsv4-tiny" and opts["port"] == 30000
    cfg = engine_config({**opts, "model": "/m"})
    assert (cfg.max_running_requests, cfg.chunked_prefill_size, cfg.context_length, cfg.mem_fraction_static) == \
        (7, 128, 512, 0.8)


def test_flags_override_plan(tmp_path):
    plan = write_plan(tmp_path, {"max_running_requests": 7, "port": 4000})
    opts = options("--model", "/m", "--plan", str(plan), "--max-running-requests", "3")
    assert opts["max_running_requests"] == 3 and opts["port"] == 4000
    assert engine_config(opts).max_running_requests == 3


@pytest.mark.parametrize("keys,roles,named", [
    ({"tp": 4}, None, "tp=4"),
    ({"moe_a2a": "deepep", "page_size": 64}, None, "moe_a2a='deepep', page_size=64"),
    ({"spec_algorithm": "EAGLE", "spec_topk": 2}, None, "spec_topk=2"),
    ({"spec_algorithm": "DSPARK"}, None, "spec_algorithm='DSPARK'"),
    ({"no_such_key": 1}, None, "no_such_key=1"),
    ({}, [{"name": "prefill"}, {"name": "decode"}], "disaggregation"),
])
def test_unimplemented_plan_keys_are_refused_by_name(tmp_path, keys, roles, named):
    with pytest.raises(UsageError, match=named.replace("(", r"\(")):
        options("--model", "/m", "--plan", str(write_plan(tmp_path, keys, roles)))


def test_plan_cuda_graph_sizes_reach_the_engine(tmp_path):
    plan = write_plan(tmp_path, {"cuda_graph_max_bs": 16, "cuda_graph_bs": [1, 2, 4, 8, 16],
                                 "disable_cuda_graph": False})
    cfg = engine_config(options("--model", "/m", "--plan", str(plan)))
    assert cfg.cuda_graph_max_bs == 16 and cfg.cuda_graph_bs == (1, 2, 4, 8, 16) and cfg.cuda_graphs
    cfg = engine_config(options("--model", "/m", "--cuda-graph-max-bs-decode", "8", "--disable-cuda-graph"))
    assert cfg.cuda_graph_max_bs == 8 and not cfg.cuda_graphs
    assert engine_config(options("--model", "/m", "--enable-torch-compile")).torch_compile
    assert not engine_config(options("--model", "/m")).torch_compile


def test_plan_mtp_keys_reach_the_engine(tmp_path):
    plan = write_plan(tmp_path, {"spec_algorithm": "EAGLE", "spec_steps": 3, "spec_topk": 1, "spec_draft_tokens": 4})
    cfg = engine_config(options("--model", "/m", "--plan", str(plan)))
    assert (cfg.speculative_algorithm, cfg.spec_steps, cfg.speculative_num_draft_tokens) == ("EAGLE", 3, 4)
    assert engine_config(options("--model", "/m", "--plan", str(plan), "--speculative-num-steps", "1",
                                 "--speculative-num-draft-tokens", "2")).spec_steps == 1
    with pytest.raises(ValueError, match="speculative_num_draft_tokens must be speculative_num_steps \\+ 1 = 4"):
        engine_config(options("--model", "/m", "--plan", str(write_plan(tmp_path, {
            "spec_algorithm": "EAGLE", "spec_steps": 3, "spec_draft_tokens": 8}))))
    assert engine_config(options("--model", "/m")).spec_steps is None


def test_cli_fails_fast_naming_the_flags():
    res = subprocess.run([sys.executable, "-m", "dsv4rt", "serve", "--model", "/nonexistent", "--tp-size", "2",
                          "--speculative-algorithm", "EAGLE", "--speculative-eagle-topk", "4"],
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 2 and "tp_size=2" in res.stderr and "speculative_eagle_topk=4" in res.stderr
    assert "Traceback" not in res.stderr
    res = subprocess.run([sys.executable, "-m", "dsv4rt", "serve"], capture_output=True, text=True, timeout=60)
    assert res.returncode == 2 and "--model is required" in res.stderr


@pytest.mark.slow
def test_entry_point_serves_tiny_checkpoint(tiny_dir):
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "dsv4rt", "serve", "--model", str(tiny_dir), "--port", str(port),
                             "--api-key", "k", "--context-length", "128", "--log-level", "warning"])
    try:
        url, deadline = f"http://127.0.0.1:{port}", time.time() + 120
        while True:
            assert proc.poll() is None and time.time() < deadline, "server exited or never came up"
            try:
                if httpx.get(f"{url}/health").status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.3)
        assert httpx.get(f"{url}/v1/models").status_code == 401
        models = httpx.get(f"{url}/v1/models", headers={"Authorization": "Bearer k"}).json()
        assert models["data"][0]["id"] == tiny_dir.name
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_device_defaults_to_the_gpu_when_there_is_one(monkeypatch):
    """`dsv4ctl serve --engine builtin` passes no --device: the runtime must not fall back to the CPU
    (in float32) on a GPU host, as it did on the H200 before (docs/tune.md)."""
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    cfg = engine_config(options("--model", "/m"))
    assert (cfg.device, cfg.dtype) == ("cuda", "bfloat16")
    cfg = engine_config(options("--model", "/m", "--device", "cpu"))
    assert (cfg.device, cfg.dtype) == ("cpu", "float32")
    assert engine_config(options("--model", "/m", "--dtype", "float32")).dtype == "float32"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert engine_config(options("--model", "/m")).device == "cpu"
