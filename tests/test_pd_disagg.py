"""Prefill/decode disaggregation on CPU with the real parts: `dsv4ctl serve` starts a tiny pd-disagg plan
(prefill worker, decode worker, sglang-router) once for the module; the state moves over Mooncake TCP.
Failure modes run against extra workers started beside it (each in its own process group, so a test
can stop or kill one): a prefill with a short bootstrap timeout, a decode with a short transfer
timeout, and a decode that loads another checkpoint."""

from __future__ import annotations

import json
import os
import random
import signal
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

pytest.importorskip("torch")
pytest.importorskip("sglang_router")
pytest.importorskip("mooncake.engine", reason="mooncake needs libibverbs1 (apt-get install libibverbs1)")

import httpx  # noqa: E402
from pd_workers import MODEL, Worker, metric, pd_body, post, wait_slots_free  # noqa: E402
from stub_sglang import assert_groups_gone, kill_groups, plan_file, run_cli  # noqa: E402

pytestmark = [pytest.mark.slow, pytest.mark.solo]  # six runtime processes: beside no CPU-bound test
READY_S = 420  # six runtime processes start at once on a shared 2-core box
# prompt lengths (tokens: the tiny tokenizer is byte-level) around the window (32) and compressor
# block ends (ratio 4 and 128), with lengths ending exactly on 4, 128 and 256
LENGTHS = [1, 3, 4, 5, 8, 12, 31, 32, 33, 64, 100, 127, 128, 129, 200, 255, 256, 257, 300, 400]


def prompt(n: int, salt: int = 0) -> str:
    return "".join(chr(97 + (7 * i + 3 * n + salt) % 26) for i in range(n))


def _plan(tmp):
    import yaml

    path = plan_file(tmp / "pd.yaml", "cpu", "tiny", "pd-disagg")
    data = yaml.safe_load(path.read_text())
    data["keys"]["context_length"] = 1024
    for role in data["roles"]:
        if role["name"] == "decode":
            role["keys"]["max_running_requests"] = 64
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path, {r["name"]: r["port"] for r in data["roles"]}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory, tiny_dir):
    """`dsv4ctl serve --detach` of the pd-disagg plan, plus the failure-mode workers (started meanwhile)."""
    from dsv4ctl.launch.ports import free_port
    from dsv4rt.checkpoint.make import write_checkpoint

    tmp = tmp_path_factory.mktemp("pd")
    other = write_checkpoint(tmp / "other", "tiny", seed=1)
    extra = {"p2": Worker(tiny_dir, "prefill", tmp / "p2.log", "--disaggregation-bootstrap-timeout", "3"),
             "d2": Worker(tiny_dir, "decode", tmp / "d2.log", "--disaggregation-transfer-timeout", "3"),
             "d3": Worker(other, "decode", tmp / "d3.log")}
    path, ports = _plan(tmp)
    boot, runs = free_port(), tmp / "runs"
    env = {**os.environ, "DSV4CTL_PD_BOOTSTRAP_PORT": str(boot)}
    res = run_cli(["serve", "--plan", str(path), "--model-path", str(tiny_dir), "--served-model-name", MODEL,
                   "--run-dir", str(runs), "--detach", "--timeout", str(READY_S), "--grace", "5"], env, READY_S + 60)
    manifest = json.loads(next(runs.glob("*/manifest.json")).read_text())
    try:
        assert res.returncode == 0, res.stderr[-3000:]
        deadline = time.monotonic() + READY_S
        for w in extra.values():
            w.wait_ready(deadline)
        url = lambda r: f"http://127.0.0.1:{ports[r]}"  # noqa: E731
        yield {"prefill": url("prefill"), "decode": url("decode"), "router": url("router"), "boot": boot,
               "runs": runs, "env": env, "manifest": manifest, **extra}
    finally:
        for w in extra.values():
            w.kill()
        run_cli(["stop", "latest", "--run-dir", str(runs), "--grace", "3"], env)
        kill_groups(manifest.get("pgids", {}).values())


@pytest.fixture(scope="module")
def single(tiny_dir):
    from runtime_server import start_server

    with start_server(tiny_dir, api_key=None, context_length=1024) as srv:
        yield srv


def _complete(base: str, text: str, stream: bool, max_tokens: int = 8) -> str:
    import openai

    client = openai.OpenAI(base_url=f"{base}/v1", api_key="none", max_retries=0, timeout=300)
    kw = dict(model=MODEL, prompt=text, max_tokens=max_tokens, temperature=0, extra_body={"ignore_eos": True})
    if not stream:
        return client.completions.create(**kw).choices[0].text
    return "".join(c.choices[0].text for c in client.completions.create(stream=True, **kw) if c.choices)


def _chat(base: str, text: str, stream: bool) -> str:
    import openai

    client = openai.OpenAI(base_url=f"{base}/v1", api_key="none", max_retries=0, timeout=300)
    kw = dict(model=MODEL, messages=[{"role": "user", "content": text}], max_tokens=6, temperature=0,
              extra_body={"chat_template_kwargs": {"thinking": False}, "ignore_eos": True})
    if not stream:
        return client.chat.completions.create(**kw).choices[0].message.content
    return "".join(c.choices[0].delta.content or "" for c in client.chat.completions.create(stream=True, **kw)
                   if c.choices)


def test_serve_runs_prefill_decode_router_each_with_its_log(cluster):
    m = cluster["manifest"]
    assert set(m["roles"]) == {"prefill", "decode", "router"} and m["status"] == "running"
    assert m["base_url"] == cluster["router"] and m["engine"] == "builtin"
    for role, info in m["roles"].items():
        assert os.path.getsize(info["log"]) > 0, role
    modes = {r: httpx.get(f"{cluster[r]}/server_info").json() for r in ("prefill", "decode")}
    assert modes["prefill"]["disaggregation_mode"] == "prefill" and modes["decode"]["disaggregation_mode"] == "decode"
    assert modes["prefill"]["disaggregation_bootstrap_port"] == cluster["boot"]
    assert httpx.get(f"{cluster['decode']}/model_info").json()["served_model_name"] == MODEL


def test_greedy_output_through_router_equals_a_single_server(cluster, single):
    texts = [prompt(n) for n in LENGTHS]
    with ThreadPoolExecutor(8) as pool:
        pd = list(pool.map(lambda a: _complete(cluster["router"], a[1], a[0] % 2 == 1), enumerate(texts)))
        ref = list(pool.map(lambda t: _complete(single.url, t, False), texts))
    assert [len(t) for t in pd] == [len(t) for t in ref]
    mismatched = [n for n, a, b in zip(LENGTHS, pd, ref) if a != b]
    assert not mismatched, f"prompt lengths whose PD output differs: {mismatched}"
    for stream in (False, True):  # chat: the V4 prompt encoding runs on both workers
        assert _chat(cluster["router"], "why is the sky blue?", stream) == _chat(single.url, "why is the sky blue?", False)
    wait_slots_free(cluster["prefill"], cluster["decode"])


def test_64_concurrent_requests_complete_and_transfers_show_in_both_metrics(cluster):
    before = metric(cluster["decode"], "disagg_transfers_total")
    with ThreadPoolExecutor(64) as pool:
        outs = list(pool.map(lambda i: _complete(cluster["router"], prompt(10 + i % 50, i), True, 6), range(64)))
    assert len(outs) == 64 and all(outs)
    for role in ("prefill", "decode"):
        url = cluster[role]
        assert metric(url, "disagg_transfers_total") >= before + 64, role
        assert metric(url, "disagg_transfer_bytes_sum") > 0 and metric(url, "disagg_transfer_seconds_count") >= 64
    wait_slots_free(cluster["prefill"], cluster["decode"])


def test_bench_load_against_the_router_reports_ttft_and_itl(cluster, tmp_path):
    from typer.testing import CliRunner

    from dsv4ctl.cli import app

    out = tmp_path / "load"
    res = CliRunner().invoke(app, ["bench", "load", "--base-url", cluster["router"], "--model", MODEL, "-c", "4",
                                   "-n", "8", "--input-len", "24", "--output-len", "6", "--api", "completions",
                                   "--warmup", "1", "--out", str(out), "--no-progress"])
    assert res.exit_code == 0, res.output
    s = json.loads((out / "summary.json").read_text())
    assert s["completed"] == 8 and s["failed"] == 0
    assert s["ttft_ms"]["count"] == 8 and s["ttft_ms"]["p50"] > 0
    assert s["itl_ms"]["count"] == 8 * 5 and s["itl_ms"]["p50"] > 0


def _pair(prefill_url: str, decode_url: str, boot: int, room: int, **kw):
    """The router's two requests for one room, sent at once: (prefill result, decode result)."""
    with ThreadPoolExecutor(2) as pool:
        p = pool.submit(post, prefill_url, pd_body(room, boot, **kw))
        d = pool.submit(post, decode_url, pd_body(room, boot, **kw))
        return p.result(), d.result()


def test_unknown_bootstrap_room_is_refused_after_the_bootstrap_timeout(cluster):
    p2 = cluster["p2"]
    status, data, secs = post(cluster["decode"], pd_body(random.getrandbits(63), p2.bootstrap))
    assert status == 404 and "unknown bootstrap room" in data["error"]["message"], data
    assert 2.5 < secs < 15
    wait_slots_free(cluster["decode"], p2.url)


def test_different_checkpoints_are_refused_at_the_handshake(cluster):
    (ps, pdata, psec), (ds, ddata, dsec) = _pair(cluster["prefill"], cluster["d3"].url, cluster["boot"],
                                                  random.getrandbits(63))
    assert ps == ds == 409, (pdata, ddata)
    assert "checkpoint mismatch" in pdata["error"]["message"] and "checkpoint mismatch" in ddata["error"]["message"]
    assert max(psec, dsec) < 30
    wait_slots_free(cluster["prefill"], cluster["d3"].url)


def test_transfer_timeout_ends_both_sides_and_frees_both_slots(cluster):
    p2, d2 = cluster["p2"], cluster["d2"]
    p2.signal(signal.SIGSTOP)  # the prefill worker hangs: its state never comes
    with ThreadPoolExecutor(2) as pool:
        pre = pool.submit(post, p2.url, pd_body(room := random.getrandbits(63), p2.bootstrap))
        try:
            status, data, secs = post(d2.url, pd_body(room, p2.bootstrap))
        finally:
            p2.signal(signal.SIGCONT)
        pstatus, pdata, _ = pre.result()
    assert status == 504 and "did not arrive" in data["error"]["message"], data
    assert 2.5 < secs < 15
    assert pstatus in (503, 504), pdata
    wait_slots_free(p2.url, d2.url)


def _until_admitted(url: str) -> None:
    deadline = time.monotonic() + 30
    while metric(url, "kv_slots_used") < 1:
        assert time.monotonic() < deadline, "the decode worker never took a slot"
        time.sleep(0.1)
    time.sleep(0.5)  # it registers right after admission


def test_decode_dying_mid_request_fails_the_prefill_request_and_frees_its_slot(cluster):
    p2, d2 = cluster["p2"], cluster["d2"]
    room = random.getrandbits(63)
    p2.signal(signal.SIGSTOP)
    with ThreadPoolExecutor(2) as pool:
        pre = pool.submit(post, p2.url, pd_body(room, p2.bootstrap, prompt=prompt(300)))
        dec = pool.submit(post, d2.url, pd_body(room, p2.bootstrap, prompt=prompt(300)))
        try:
            _until_admitted(d2.url)
            d2.kill()
        finally:
            p2.signal(signal.SIGCONT)
        dstatus, ddata, _ = dec.result()
        pstatus, pdata, psecs = pre.result()
    assert dstatus == 0, ddata  # the client sees the connection drop
    assert pstatus == 502 and "decode worker" in pdata["error"]["message"], pdata
    assert psecs < 30
    wait_slots_free(p2.url)


def test_prefill_dying_mid_request_fails_the_decode_request_and_frees_its_slot(cluster):
    p2 = cluster["p2"]
    room = random.getrandbits(63)
    p2.signal(signal.SIGSTOP)
    with ThreadPoolExecutor(2) as pool:
        pool.submit(post, p2.url, pd_body(room, p2.bootstrap))
        dec = pool.submit(post, cluster["decode"], pd_body(room, p2.bootstrap))
        _until_admitted(cluster["decode"])
        t0 = time.monotonic()
        p2.kill()
        status, data, _ = dec.result()
    assert status == 502 and "closed the bootstrap connection" in data["error"]["message"], data
    assert time.monotonic() - t0 < 10
    wait_slots_free(cluster["decode"])


def test_stop_stops_all_three_together(cluster):
    res = run_cli(["stop", "latest", "--run-dir", str(cluster["runs"]), "--grace", "5"], cluster["env"])
    assert res.returncode == 0, res.stderr
    assert_groups_gone(cluster["manifest"]["pgids"].values(), timeout=15)
