"""OpenAI-shaped 4xx/5xx errors, the API key, ops endpoints, 503 on a full queue, and a client that
disconnects mid-stream freeing its slot at once (FakeModel server: fast, no checkpoint load)."""

import asyncio
import time

import httpx
import openai
import pytest

pytest.importorskip("torch")
pytest.importorskip("deepseek_recipe")

from runtime_server import API_KEY, MODEL, LiveServer  # noqa: E402

from dsv4rt.config import ModelArgs  # noqa: E402
from dsv4rt.engine.config import EngineConfig  # noqa: E402
from dsv4rt.engine.fake_model import FakeModel  # noqa: E402
from dsv4rt.server.build import build_state  # noqa: E402

AUTH = {"Authorization": f"Bearer {API_KEY}"}
CHAT = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}
COMPLETION = {"model": MODEL, "prompt": "hi", "max_tokens": 2}


def fake_server(tiny_dir, delay=0.0, **kw):
    args = ModelArgs.from_pretrained_dir(tiny_dir)
    cfg = EngineConfig(model_path=str(tiny_dir), **{"context_length": 1024, **kw})
    model = FakeModel(args.vocab_size, step_delay_s=delay)
    return LiveServer(build_state(cfg, MODEL, API_KEY, model=model, args=args))


@pytest.fixture(scope="module")
def server(tiny_dir):
    with fake_server(tiny_dir) as srv:
        yield srv


def post(srv, path, body=None, content=None, headers=AUTH):
    return httpx.post(f"{srv.url}{path}", json=body, content=content, headers=headers, timeout=60)


def assert_error(r, status, param=None):
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert err["message"] and err["type"]
    if param is not None:
        assert err["param"] == param


@pytest.mark.parametrize("path,base", [("/v1/completions", COMPLETION), ("/v1/chat/completions", CHAT)])
def test_bad_requests_get_openai_errors(server, path, base):
    assert_error(post(server, path, content=b"{not json"), 400)
    assert_error(post(server, path, content=b"[1, 2]"), 400)
    assert_error(post(server, path, {**base, "temperature": "hot"}), 400)
    assert_error(post(server, path, {**base, "n": 2}), 400)
    assert_error(post(server, path, {**base, "max_tokens": -1}), 400)
    assert_error(post(server, path, {**base, "model": "gpt-4"}), 404, "model")
    assert_error(post(server, path, {**base, "stream": "yes"}), 400)
    long = {"prompt": "x" * 1100} if "prompt" in base else {"messages": [{"role": "user", "content": "x" * 1100}]}
    assert_error(post(server, path, {**base, **long}), 400)


def test_out_of_vocab_prompt_ids_are_refused(server):
    assert_error(post(server, "/v1/completions", {**COMPLETION, "prompt": [1, 10**9]}), 400, "prompt")
    assert post(server, "/v1/completions", {**COMPLETION, "prompt": [1, 2]}).status_code == 200


def test_openai_client_raises_typed_errors(server):
    c = server.client()
    with pytest.raises(openai.NotFoundError):
        c.completions.create(model="nope", prompt="hi", max_tokens=1)
    with pytest.raises(openai.BadRequestError) as e:
        c.completions.create(model=MODEL, prompt="hi", max_tokens=1, extra_body={"top_k": "many"})
    assert e.value.body["param"] == "top_k"
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=f"{server.url}/v1", api_key="wrong", max_retries=0).models.list()


def test_api_key_guards_everything_but_health(server):
    for path in ("/v1/models", "/metrics", "/version"):
        assert_error(httpx.get(f"{server.url}{path}"), 401)
    assert_error(post(server, "/v1/completions", COMPLETION, headers={}), 401)
    assert httpx.get(f"{server.url}/health").json() == {"status": "ok"}


def test_ops_endpoints(server):
    assert [m.id for m in server.client().models.list()] == [MODEL]
    assert httpx.get(f"{server.url}/version", headers=AUTH).json()["engine"] == "dsv4rt"
    server.client().completions.create(model=MODEL, prompt="hi", max_tokens=3)
    text = httpx.get(f"{server.url}/metrics", headers=AUTH).text
    for name in ("num_requests_waiting", "num_requests_running", "kv_cache_usage_ratio",
                 "time_to_first_token_seconds_bucket", "inter_token_latency_seconds_count",
                 "generation_tokens_per_second", "generation_tokens_total"):
        assert f"dsv4rt_{name}" in text
    assert "dsv4rt_requests_finished_total 0" not in text
    steps = float(next(ln.split()[1] for ln in text.splitlines() if ln.startswith("dsv4rt_engine_step_seconds_count")))
    share = float(next(ln.split()[1] for ln in text.splitlines() if ln.startswith("dsv4rt_engine_forward_share")))
    assert steps >= 3 and 0 < share <= 1  # a prefill and two decode steps at least; the runner is part of each


async def _burst(url, n):
    async with httpx.AsyncClient(timeout=60) as c:
        body = {**COMPLETION, "max_tokens": 3}
        return await asyncio.gather(*[c.post(f"{url}/v1/completions", json=body, headers=AUTH) for _ in range(n)])


def test_full_queue_gets_503_with_retry_after(tiny_dir):
    with fake_server(tiny_dir, delay=0.05, max_running_requests=1, max_queue=2) as srv:
        rs = asyncio.run(_burst(srv.url, 8))
        busy = [r for r in rs if r.status_code == 503]
        assert busy and all(r.headers["retry-after"] == "1" for r in busy)
        assert all(r.status_code == 200 for r in rs if r not in busy)
        assert_error(busy[0], 503)
        wait_idle(srv)


def wait_idle(srv, timeout=5.0):
    sch = srv.state.engine.scheduler
    deadline = time.time() + timeout
    while sch.running or sch.waiting:
        assert time.time() < deadline, f"still running: {len(sch.running)} waiting: {len(sch.waiting)}"
        time.sleep(0.02)
    sch.slots.check_integrity()
    assert sch.slots.num_available == sch.slots.num_slots


def test_disconnect_mid_stream_frees_slot_at_once(tiny_dir):
    with fake_server(tiny_dir, delay=0.05, max_running_requests=2) as srv:
        body = {**COMPLETION, "max_tokens": 500, "stream": True, "extra": 1}
        with httpx.stream("POST", f"{srv.url}/v1/completions", json=body, headers=AUTH, timeout=30) as r:
            assert r.status_code == 200
            next(r.iter_lines())
            assert len(srv.state.engine.scheduler.running) == 1
        t0 = time.time()
        wait_idle(srv, timeout=2.0)  # 500 tokens would take 25 s
        assert time.time() - t0 < 2.0
