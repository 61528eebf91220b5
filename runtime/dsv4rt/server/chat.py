"""Chat completions through deepseek-recipe: request conversion and validation, V4 prompt encoding
(reasoning modes: non-think / think high / think max), and the stream processor that turns sampled
tokens into OpenAI chunks with reasoning_content and DSML tool calls. Nothing here re-implements
what the recipe does; this module only bridges it to the engine's Sequence/StepOutput."""

from __future__ import annotations

import json
from dataclasses import dataclass

import deepseek_recipe as dr

from dsv4rt.engine.engine import StepOutput
from dsv4rt.engine.sequence import FinishReason, SamplingError, SamplingParams, Sequence
from dsv4rt.server.protocol import APIError, SamplingExtras, now, spec_usage

_FINISH = {FinishReason.STOP: dr.InferenceFinishReason.Stop, FinishReason.LENGTH: dr.InferenceFinishReason.Length}


@dataclass
class ChatJob:
    request: dr.ConversationRequest
    prompt_ids: list[int]
    params: SamplingParams
    stream: bool


def conversion_error(e: Exception) -> APIError:
    """The recipe's ConversionError carries an OpenAI error body; other errors are plain 400s."""
    body = getattr(e, "body", None)
    if body:
        err = json.loads(body).get("error", {})
        return APIError(getattr(e, "status_code", 400), err.get("message", str(e)),
                        err.get("type", "invalid_request_error"), err.get("param"), err.get("code"))
    return APIError(400, str(e))


def sglang_spellings(body: dict) -> dict:
    """Fields the recipe does not read, in the spelling it does: OpenAI's `max_completion_tokens` (what
    sglang-router sends for `max_tokens`) and SGLang's `chat_template_kwargs.thinking` (which the router
    keeps, while it drops DeepSeek's `thinking` object)."""
    body = dict(body)
    if body.get("max_tokens") is None and body.get("max_completion_tokens") is not None:
        body["max_tokens"] = body["max_completion_tokens"]
    thinking = (body.get("chat_template_kwargs") or {}).get("thinking") if isinstance(
        body.get("chat_template_kwargs"), dict) else None
    if "thinking" not in body and isinstance(thinking, bool):
        body["thinking"] = {"type": "enabled" if thinking else "disabled"}
    return body


class ChatFrontend:
    def __init__(self, tokenizer_json: str, served_model_name: str, context_length: int):
        self.tokenizer = dr.Tokenizer.from_file(tokenizer_json)
        self.encoding = dr.DeepseekV4Encoding().with_tokenizer(self.tokenizer)
        # only our served name is accepted; the recipe then rejects any other model with a 400
        self.options = dr.ConversionOptions().with_model_versions_by_name(
            {served_model_name: dr.ModelVersion.DeepseekV4Pro})
        self.model, self.context_length = served_model_name, context_length
        self.think_end_ids = self.tokenizer.encode(dr.SpecialToken.ThinkingEnd.default_str())

    def prepare(self, body: dict) -> ChatJob:
        body = sglang_spellings(body)
        extras = SamplingExtras.model_validate(body)
        try:
            req = dr.ChatCompletionRequest(body).convert(self.options)
            prompt = self.encoding.encode(req.conversation)
            max_tokens = req.resolve_max_tokens(len(prompt), self.context_length)
        except (dr.ConversionError, ValueError, OverflowError, TypeError) as e:
            raise conversion_error(e) from None
        io = req.inference_options
        try:
            params = SamplingParams(
                max_tokens=max_tokens, temperature=io.temperature if io.temperature is not None else 1.0,
                top_p=io.top_p or 1.0, top_k=max(extras.top_k, 0), seed=io.seed,
                stop=tuple(req.parsing_options.stop_sequences), stop_token_ids=tuple(extras.stop_token_ids or ()),
                ignore_eos=extras.ignore_eos, logprobs=io.logprobs, top_logprobs=io.top_logprobs or 0)
        except SamplingError as e:
            raise APIError(400, str(e), param=e.param) from None
        return ChatJob(req, prompt, params, req.stream)


class ChatResponder:
    """Feeds StepOutputs to the recipe's StreamProcessor; keeps the accumulated response too."""

    def __init__(self, front: ChatFrontend, job: ChatJob, rid: str):
        gen = dr.ChatCompletionRequest.chunk_generator(job.request, rid, front.model)
        self.proc = dr.StreamProcessor(gen, job.request.parsing_options, front.tokenizer)
        self.rid, self.model, self.logprobs = rid, front.model, job.params.logprobs
        self.response_obj: dr.ChatCompletionResponse | None = None
        self.thinks = job.request.parsing_options.thinking_initial_stage is not None
        self.think_end = front.think_end_ids[0] if len(front.think_end_ids) == 1 else None
        self.reasoning_tokens = 0
        self.generated: int | None = None  # tokens the engine sampled, once finished
        self.spec: dict = {}  # spec_usage once finished

    def _start(self, seq: Sequence) -> list:
        usage = dr.PromptUsage(prompt_tokens=len(seq.prompt_ids), prompt_cache_hit_tokens=seq.num_cached)
        self.response_obj = dr.ChatCompletionResponse(self.rid, self.model, now(), len(seq.prompt_ids), seq.num_cached)
        return self.proc.push(dr.InferenceChunk.ready(prompt_usage=usage))

    def on_output(self, seq: Sequence, out: StepOutput) -> list[str]:
        chunks = self._start(seq) if self.response_obj is None else []
        if out.token_id is not None:
            lps = [out.logprob] if self.logprobs else None
            chunks += self.proc.push(dr.InferenceChunk.tokens([out.token_id], lps))
        if out.finished:
            chunks += self.proc.push(dr.InferenceChunk.finish(_FINISH[out.finish_reason]))
            chunks += self.proc.finish()
            self.spec = spec_usage(len(seq.output_ids), seq.spec_verify_ct)
        # NOTE: accumulate consumes a chunk, so serialize first
        jsons = [_with_usage(c.to_json(), self.spec) for c in chunks]
        for c in chunks:
            self.response_obj.accumulate(c)
        if out.finished:
            self.generated, self.reasoning_tokens = len(seq.output_ids), self._count_reasoning(seq.output_ids)
            jsons = [self._fix_usage(j) for j in jsons]
        return jsons

    def _count_reasoning(self, output_ids: list[int]) -> int:
        """Sampled tokens before the end of thinking. The recipe re-encodes the reasoning text,
        which can exceed the tokens actually generated; usage must count what was generated."""
        if not self.thinks:
            return 0
        if self.think_end in output_ids:
            return output_ids.index(self.think_end)
        return len(output_ids)

    def _fix_usage(self, text: str) -> str:
        """Usage counts what the engine generated. The recipe's own counts do not: its completion count
        leaves out a last token it holds back (seen: 39 for 40 tokens sampled up to max_tokens), and its
        reasoning count re-encodes text (`_count_reasoning`)."""
        if '"usage"' not in text:
            return text
        obj = json.loads(text)
        usage = obj.get("usage")
        if not isinstance(usage, dict):
            return text
        if self.generated is not None:
            usage["completion_tokens"] = self.generated
            if isinstance(usage.get("prompt_tokens"), int):
                usage["total_tokens"] = usage["prompt_tokens"] + self.generated
        details = usage.get("completion_tokens_details") or {}
        if "reasoning_tokens" in details:
            details["reasoning_tokens"] = self.reasoning_tokens
        return json.dumps(obj, separators=(",", ":"))

    def close(self) -> None:
        if not self.proc.finished:
            self.proc.close()

    def response(self) -> str:
        return _with_usage(self._fix_usage(self.response_obj.to_json()), self.spec)


def _with_usage(body: str, extra: dict) -> str:
    """The recipe's JSON with `extra` (speculative decoding's numbers) added to its usage, if it has one."""
    if not extra or '"usage"' not in body:
        return body
    obj = json.loads(body)
    if isinstance(obj.get("usage"), dict):
        obj["usage"].update(extra)
    return json.dumps(obj)
