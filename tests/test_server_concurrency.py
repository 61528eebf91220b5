"""200 simultaneous streaming requests to the tiny model on CPU: each one completes or gets an
explicit 503; greedy outputs equal the single-request outputs; no slot leaks afterwards."""

import asyncio
import time

import httpx
import openai
import pytest

pytest.importorskip("torch")
pytest.importorskip("deepseek_recipe")

from test_server_errors import wait_idle  # noqa: E402
from runtime_server import API_KEY, MODEL, start_server  # noqa: E402

N_REQUESTS = 200
PROMPTS = [[0, 72, 105], [0, 66, 121, 101], [0, 79, 75], [0, 87, 104, 121, 33]]


async def stream_one(client: openai.AsyncOpenAI, prompt: list[int]) -> str | int:
    """The streamed text, or the HTTP status of a refusal."""
    try:
        stream = await client.completions.create(model=MODEL, prompt=prompt, max_tokens=4, temperature=0,
                                                 stream=True, extra_body={"ignore_eos": True})
        return "".join([ch.choices[0].text async for ch in stream if ch.choices])
    except openai.APIStatusError as e:
        return e.status_code


async def burst(url: str) -> tuple[list, float]:
    http = httpx.AsyncClient(limits=httpx.Limits(max_connections=N_REQUESTS + 10), timeout=600)
    client = openai.AsyncOpenAI(base_url=f"{url}/v1", api_key=API_KEY, max_retries=0, http_client=http)
    t0 = time.perf_counter()
    results = await asyncio.gather(*[stream_one(client, PROMPTS[i % len(PROMPTS)]) for i in range(N_REQUESTS)])
    elapsed = time.perf_counter() - t0
    await http.aclose()
    return results, elapsed


@pytest.mark.slow
def test_200_concurrent_streams(tiny_dir):
    with start_server(tiny_dir, context_length=64, max_running_requests=32, max_queue=96,
                      chunked_prefill_size=512) as srv:
        c = srv.client()
        single = [c.completions.create(model=MODEL, prompt=p, max_tokens=4, temperature=0,
                                       extra_body={"ignore_eos": True}).choices[0].text for p in PROMPTS]
        results, elapsed = asyncio.run(burst(srv.url))
        wait_idle(srv)
        refused = [r for r in results if not isinstance(r, str)]
        done = [(i, r) for i, r in enumerate(results) if isinstance(r, str)]
        assert set(refused) <= {503}, refused
        assert len(done) + len(refused) == N_REQUESTS and len(done) >= 32 + 96 - 32
        assert all(r == single[i % len(PROMPTS)] for i, r in done)
        print(f"\n200 streams: {len(done)} done, {len(refused)} refused (503) in {elapsed:.1f}s; "
              f"{4 * len(done) / elapsed:.1f} generated tok/s")
