"""FastAPI app: OpenAI routes, API-key check, OpenAI-shaped errors, SSE streaming, /metrics."""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import time
from contextlib import asynccontextmanager
from dataclasses import dataclass
from importlib import metadata
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from pydantic import ValidationError

from dsv4rt.engine.engine import AsyncEngine
from dsv4rt.engine.scheduler import QueueFull
from dsv4rt.engine.sequence import Sequence
from dsv4rt.server import info
from dsv4rt.server.body import parse_json, read_bounded
from dsv4rt.server.chat import ChatFrontend, ChatResponder
from dsv4rt.server.completions import CompletionResponder, prompt_ids, sampling_params
from dsv4rt.server.metrics import Metrics
from dsv4rt.server.protocol import APIError, CompletionRequest, model_list, new_id

RETRY_AFTER_S = 1
DISCONNECT_POLL_S = 0.25  # how often a non-streaming request checks that its client is still there
log = logging.getLogger(__name__)


@dataclass
class ServerState:
    engine: AsyncEngine
    chat: ChatFrontend
    tokenizer: Any  # tokenizers.Tokenizer: raw prompts of /v1/completions and their text
    model_name: str
    context_length: int
    eos_token_ids: tuple[int, ...]
    metrics: Metrics
    vocab_size: int
    api_key: str | None = None
    model_path: str = ""
    disagg: Any = None  # dsv4rt.disagg side (PD prefill or decode worker), else None


def error_response(e: APIError) -> JSONResponse:
    return JSONResponse(e.body(), status_code=e.status, headers=e.headers)


def internal(e: Exception) -> APIError:
    """Last resort: a bug still answers in OpenAI's shape (never a plain-text 500) and is logged."""
    log.error("unhandled %s in a request", type(e).__name__, exc_info=e)
    return APIError(500, f"internal error ({type(e).__name__})", "server_error", code="internal_error")


def pydantic_error(e: ValidationError | RequestValidationError) -> APIError:
    err = e.errors()[0]
    param = ".".join(str(p) for p in err.get("loc", ()) if p != "body")
    return APIError(400, f"{param}: {err.get('msg')}", param=param or None)


async def read_json(request: Request, state: ServerState) -> dict:
    body = parse_json(await read_bounded(request))
    if not isinstance(body, dict):
        raise APIError(400, "request body must be a JSON object")
    if body.get("model") != state.model_name:
        raise APIError(404, f"model {body.get('model')!r} does not exist; this server serves {state.model_name!r}",
                       param="model", code="model_not_found")
    return body


def gauges(state: ServerState) -> dict[str, tuple[float, str]]:
    sch = state.engine.scheduler
    used = sch.slots.num_slots - sch.slots.num_available
    cap = sch.slots.num_slots * state.context_length
    return {
        "num_requests_waiting": (len(sch.waiting), "Requests in the waiting queue."),
        "num_requests_running": (len(sch.running), "Requests holding a KV slot."),
        "kv_slots_used": (used, "KV/state slots owned by running requests."),
        "kv_slots_total": (sch.slots.num_slots, "KV/state slots in the pool."),
        "kv_cache_usage_ratio": (sch.num_tokens_in_use() / cap, "Computed tokens / pool token capacity."),
        "engine_forward_share": (state.engine.engine.forward_seconds_total / max(state.metrics.step.sum, 1e-9),
                                 "Share of engine step time spent in the model runner (forward + sampling)."),
    }


def create_app(state: ServerState) -> FastAPI:
    @asynccontextmanager
    async def lifespan(_app):
        state.engine.start()
        if state.disagg is not None:
            await state.disagg.start()
        yield
        if state.disagg is not None:
            await state.disagg.stop()
        state.engine.shutdown()

    app = FastAPI(title="dsv4rt", lifespan=lifespan)
    app.state.server = state
    app.add_exception_handler(APIError, lambda _r, e: error_response(e))
    app.add_exception_handler(RequestValidationError, lambda _r, e: error_response(pydantic_error(e)))
    app.add_exception_handler(Exception, lambda _r, e: error_response(internal(e)))
    add_routes(app, state)
    return app


def require_key(state: ServerState):
    def check(request: Request) -> None:
        if state.api_key is None:
            return
        got = request.headers.get("authorization", "")
        if not hmac.compare_digest(got.encode(), f"Bearer {state.api_key}".encode()):
            raise APIError(401, "missing or invalid API key", code="invalid_api_key")
    return Depends(check)


def add_routes(app: FastAPI, state: ServerState) -> None:
    auth = [require_key(state)]

    @app.get("/health")
    async def health() -> dict:
        if not state.engine.is_alive:
            raise APIError(503, "engine loop is not running", "server_error", code="engine_down")
        return {"status": "ok"}

    @app.get("/version", dependencies=auth)
    async def version() -> dict:
        return {"version": metadata.version("dsv4ctl"), "engine": "dsv4rt"}

    @app.get("/v1/models", dependencies=auth)
    async def models() -> dict:
        return model_list(state.model_name, state.context_length)

    @app.get("/server_info", dependencies=auth)
    @app.get("/get_server_info", dependencies=auth, include_in_schema=False)
    async def server_info() -> dict:
        return info.server_info(state)

    @app.get("/model_info", dependencies=auth)
    @app.get("/get_model_info", dependencies=auth, include_in_schema=False)
    async def model_info() -> dict:
        return info.model_info(state)

    @app.get("/metrics", dependencies=auth)
    async def metrics() -> PlainTextResponse:
        return PlainTextResponse(state.metrics.render(), media_type="text/plain; version=0.0.4")

    @app.post("/v1/completions", dependencies=auth)
    async def completions(request: Request) -> Response:
        return await complete(state, await read_json(request, state), request)

    @app.post("/v1/chat/completions", dependencies=auth)
    async def chat(request: Request) -> Response:
        return await chat_complete(state, await read_json(request, state), request)


async def complete(state: ServerState, body: dict, request: Request | None = None) -> Response:
    try:
        req = CompletionRequest.model_validate(body)
    except ValidationError as e:
        raise pydantic_error(e) from None
    # Tokenizing a long prompt takes long: off the event loop, so other streams keep flowing.
    ids = await asyncio.to_thread(prompt_ids, req, lambda s: state.tokenizer.encode(s, add_special_tokens=False).ids)
    if not all(0 <= t < state.vocab_size for t in ids):
        raise APIError(400, f"prompt token ids must be in [0, {state.vocab_size})", param="prompt")
    room = state.context_length - len(ids)
    max_tokens = req.max_tokens if req.max_tokens is not None else room
    if room < 1 or max_tokens > room:
        raise APIError(400, f"this model's context length is {state.context_length} tokens; the prompt has "
                       f"{len(ids)} and max_tokens is {max_tokens}", param="max_tokens", code="context_length_exceeded")
    params = sampling_params(req, max_tokens)
    seq = Sequence(ids, params, eos_token_ids=state.eos_token_ids, keep_text=True)
    include_usage = bool(req.stream_options and req.stream_options.include_usage)
    token_str = lambda t: state.tokenizer.id_to_token(t) or ""  # noqa: E731
    responder = CompletionResponder(new_id("cmpl"), state.model_name, params, token_str, include_usage)
    return await run(state, seq, responder, req.stream, body, request)


async def chat_complete(state: ServerState, body: dict, request: Request | None = None) -> Response:
    try:
        job = await asyncio.to_thread(state.chat.prepare, body)  # encoding, like tokenizing: off the loop
    except ValidationError as e:
        raise pydantic_error(e) from None
    seq = Sequence(job.prompt_ids, job.params, eos_token_ids=state.eos_token_ids)
    return await run(state, seq, ChatResponder(state.chat, job, new_id("chatcmpl")), job.stream, body, request)


async def run(state: ServerState, seq: Sequence, responder, stream: bool, body: dict,
              request: Request | None = None) -> Response:
    if state.disagg is not None:  # a PD worker: the request's state moves between two servers
        return await state.disagg.serve(state, seq, responder, stream, body)
    return await respond(state, seq, responder, open_outputs(state, seq), stream, request=request)


def open_outputs(state: ServerState, seq: Sequence):
    try:
        return state.engine.open_stream(seq)
    except QueueFull as e:
        state.metrics.inc("requests_rejected_total")
        raise APIError(503, f"server is busy: {e}; retry later", "server_overloaded", code="queue_full",
                       headers={"Retry-After": str(RETRY_AFTER_S)}) from None


async def respond(state: ServerState, seq: Sequence, responder, outputs, stream: bool, *,
                  buffered: bool = False, t0: float | None = None, request: Request | None = None) -> Response:
    """The HTTP answer; `buffered` streams only once every output is in, so a failure is still an
    HTTP status (a PD prefill worker's answer waits for its transfer anyway)."""
    events = timed_events(state, seq, responder, outputs, t0)
    if stream and not buffered:
        return StreamingResponse(sse(events), media_type="text/event-stream")
    if not stream:
        if not await drain_unless_gone(events, request):
            return Response(status_code=499)  # nobody is listening; the slot is already free
        return Response(responder.response(), media_type="application/json")
    chunks = [c async for c in events]
    return StreamingResponse(sse(_replay(chunks)), media_type="text/event-stream")


async def _replay(chunks: list[str]):
    for c in chunks:
        yield c


async def drain_unless_gone(events, request: Request | None) -> bool:
    """Consume a non-streamed request's events; False (request aborted, slot freed) as soon as the
    client disconnects, checked every DISCONNECT_POLL_S, instead of generating up to max_tokens."""
    async def drain():
        async for _ in events:
            pass

    task = asyncio.ensure_future(drain())
    while not task.done():
        await asyncio.wait({task}, timeout=DISCONNECT_POLL_S)
        if not task.done() and request is not None and await request.is_disconnected():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            await events.aclose()  # runs timed_events' finally: abort + metrics
            return False
    task.result()  # re-raise an engine error as its APIError
    return True


async def timed_events(state: ServerState, seq: Sequence, responder, outputs, t0: float | None = None):
    """Chunks (JSON strings) per engine output, with TTFT/ITL/e2e metrics; aborts if left early.
    `t0`: when the request started, if before the outputs were opened (PD decode)."""
    t0 = last = t0 if t0 is not None else time.perf_counter()
    finished = False
    try:
        async for out in outputs:
            if out.error:
                raise APIError(500, out.error, "server_error", code="engine_error")
            t = time.perf_counter()
            state.metrics.observe(state.metrics.ttft if last == t0 else state.metrics.itl, t - last)
            last, finished = t, out.finished
            for chunk in responder.on_output(seq, out):
                yield chunk
        state.metrics.observe(state.metrics.e2e, time.perf_counter() - t0)
        state.metrics.inc("requests_finished_total")
    finally:
        responder.close()
        if not finished:
            state.engine.abort(seq.seq_id)
            state.metrics.inc("requests_aborted_total")


async def sse(events):
    try:
        async for chunk in events:
            yield f"data: {chunk}\n\n"
        yield "data: [DONE]\n\n"
    except APIError as e:
        yield f"data: {json.dumps(e.body())}\n\n"
    except Exception as e:  # noqa: BLE001 - headers are sent: the error must travel as an event
        yield f"data: {json.dumps(internal(e).body())}\n\n"
    finally:
        await events.aclose()  # a disconnect cancels us here; closing runs the abort at once
