"""/v1/completions: prompt tokenization, sampling params, and text deltas with stop-string holdback."""

from __future__ import annotations

import json

from dsv4rt.engine.engine import StepOutput
from dsv4rt.engine.sequence import SamplingError, SamplingParams, Sequence, safe_text_end
from dsv4rt.server.protocol import APIError, CompletionRequest, completion_choice, completion_object, usage


def prompt_ids(req: CompletionRequest, encode) -> list[int]:
    """One prompt (string or token ids); a batch of prompts would need n > 1 choices."""
    p = req.prompt
    if isinstance(p, list) and p and isinstance(p[0], (str, list)):
        if len(p) != 1:
            raise APIError(400, "only one prompt per request is supported", param="prompt")
        p = p[0]
    ids = encode(p) if isinstance(p, str) else list(p)
    if not ids:
        raise APIError(400, "prompt is empty", param="prompt")
    return ids


def sampling_params(req: CompletionRequest, max_tokens: int) -> SamplingParams:
    unsupported = {"n": req.n != 1, "echo": req.echo, "presence_penalty": req.presence_penalty != 0,
                   "frequency_penalty": req.frequency_penalty != 0}
    for param, bad in unsupported.items():
        if bad:
            msg = f"{param}={getattr(req, param)!r} is not supported (only n=1, no echo, no penalties)"
            raise APIError(400, msg, param=param)
    stop = (req.stop,) if isinstance(req.stop, str) else tuple(req.stop or ())
    try:
        return SamplingParams(
            max_tokens=max_tokens, temperature=req.temperature, top_p=req.top_p, top_k=max(req.top_k, 0),
            seed=req.seed, stop=stop, stop_token_ids=tuple(req.stop_token_ids or ()), ignore_eos=req.ignore_eos,
            logprobs=req.logprobs is not None, top_logprobs=req.logprobs or 0)
    except SamplingError as e:
        raise APIError(400, str(e), param=e.param) from None


class CompletionResponder:
    """Turns StepOutputs into text_completion chunks; holds back text that may become a stop string."""

    def __init__(self, rid: str, model: str, params: SamplingParams, token_str, include_usage: bool):
        self.rid, self.model, self.params = rid, model, params
        self.token_str, self.include_usage = token_str, include_usage
        self.sent, self.text, self.finish_reason = 0, "", None
        self.lp = {"tokens": [], "token_logprobs": [], "top_logprobs": [], "text_offset": []}
        self.seq: Sequence | None = None

    def _logprobs(self, out: StepOutput) -> dict | None:
        if not self.params.logprobs or out.logprob is None:
            return None
        chosen, top = out.logprob
        entry = {"tokens": [self.token_str(out.token_id)], "token_logprobs": [chosen],
                 "top_logprobs": [{self.token_str(t): v for t, v in top}], "text_offset": [self.sent]}
        for k, v in entry.items():
            self.lp[k] += v
        return entry

    def on_output(self, seq: Sequence, out: StepOutput) -> list[str]:
        self.seq, self.text = seq, out.text
        lp = self._logprobs(out) if out.token_id is not None else None
        end = len(out.text) if out.finished else safe_text_end(out.text, self.params.stop)
        delta, self.sent = out.text[self.sent : end], max(self.sent, end)
        self.finish_reason = out.finish_reason.value if out.finished else None
        chunks = []
        if delta or lp or out.finished:  # a held-back token with nothing to report sends nothing
            choice = completion_choice(delta, self.finish_reason, lp)
            chunks.append(completion_object(self.rid, self.model, [choice], None))
        if out.finished and self.include_usage:
            chunks.append(completion_object(self.rid, self.model, [], self._usage()))
        return [json.dumps(c) for c in chunks]

    def _usage(self) -> dict:
        return usage(len(self.seq.prompt_ids), len(self.seq.output_ids), self.seq.num_cached, self.seq.spec_verify_ct)

    def response(self) -> str:
        lp = self.lp if self.params.logprobs else None
        choice = completion_choice(self.text, self.finish_reason, lp)
        return json.dumps(completion_object(self.rid, self.model, [choice], self._usage()))

    def close(self) -> None:
        pass
