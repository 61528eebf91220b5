"""Chat through deepseek-recipe with a scripted model: reasoning_content and DSML tool calls are
parsed (streaming and not), and the reasoning modes render the recipe's prompts."""

import pytest

pytest.importorskip("torch")
pytest.importorskip("deepseek_recipe")

from runtime_server import MODEL, LiveServer  # noqa: E402

from dsv4rt.config import ModelArgs  # noqa: E402
from dsv4rt.engine.config import EngineConfig  # noqa: E402
from dsv4rt.engine.fake_model import ScriptedModel  # noqa: E402
from dsv4rt.server.build import build_state  # noqa: E402

REPLY = ("Need weather.</think>Checking.\n\n<｜DSML｜tool_calls>\n<｜DSML｜invoke name=\"get_weather\">\n"
         "<｜DSML｜parameter name=\"city\" string=\"true\">Paris</｜DSML｜parameter>\n"
         "<｜DSML｜parameter name=\"days\" string=\"false\">3</｜DSML｜parameter>\n"
         "</｜DSML｜invoke>\n</｜DSML｜tool_calls>")
TOOLS = [{"type": "function", "function": {"name": "get_weather", "parameters": {
    "type": "object", "properties": {"city": {"type": "string"}, "days": {"type": "integer"}}}}}]
MESSAGES = [{"role": "user", "content": "Weather in Paris?"}]


@pytest.fixture(scope="module")
def server(tiny_dir):
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(tiny_dir / "tokenizer.json"))
    args = ModelArgs.from_pretrained_dir(tiny_dir)
    script = tok.encode(REPLY, add_special_tokens=False).ids
    model = ScriptedModel(script, tok.token_to_id("<｜Assistant｜>"), args.eos_token_id, args.vocab_size)
    cfg = EngineConfig(model_path=str(tiny_dir), context_length=2048, chunked_prefill_size=1024)
    with LiveServer(build_state(cfg, MODEL, None, model=model, args=args)) as srv:
        yield srv


def test_tool_call_and_reasoning_parsed_non_streaming(server):
    res = server.client().chat.completions.create(model=MODEL, messages=MESSAGES, tools=TOOLS, max_tokens=400)
    msg = res.choices[0].message
    assert res.choices[0].finish_reason == "tool_calls"
    assert msg.reasoning_content == "Need weather." and msg.content == "Checking."
    (call,) = msg.tool_calls
    assert call.function.name == "get_weather"
    assert call.function.arguments.replace(" ", "") == '{"city":"Paris","days":3}'


def test_tool_call_parsed_streaming(server):
    chunks = list(server.client().chat.completions.create(model=MODEL, messages=MESSAGES, tools=TOOLS,
                                                          max_tokens=400, stream=True))
    deltas = [c.choices[0].delta for c in chunks if c.choices]
    reasoning = "".join(getattr(d, "reasoning_content", None) or "" for d in deltas)
    args = "".join(tc.function.arguments or "" for d in deltas for tc in (d.tool_calls or []))
    names = [tc.function.name for d in deltas for tc in (d.tool_calls or []) if tc.function.name]
    assert reasoning == "Need weather." and names == ["get_weather"]
    assert args.replace(" ", "") == '{"city":"Paris","days":3}'
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 10


def test_non_think_mode_puts_text_in_content(server):
    res = server.client().chat.completions.create(model=MODEL, messages=MESSAGES, max_tokens=400,
                                                  extra_body={"thinking": {"type": "disabled"}})
    # no <think> phase: the whole script (its own "</think>" included) is answer text up to the DSML block
    assert getattr(res.choices[0].message, "reasoning_content", None) in (None, "")
    assert res.choices[0].message.content.startswith("Need weather.")


@pytest.mark.parametrize("extra,opener,marker", [
    ({"thinking": {"type": "disabled"}}, "</think>", None),
    ({"reasoning_effort": "high"}, "<think>", "Reasoning Effort"),
    ({"reasoning_effort": "max"}, "<think>", "Reasoning Effort"),
])
def test_reasoning_modes_render_the_recipe_prompt(server, extra, opener, marker):
    job = server.state.chat.prepare({"model": MODEL, "messages": MESSAGES, **extra})
    text = server.state.tokenizer.decode(job.prompt_ids, skip_special_tokens=False)
    assert text.endswith("<｜Assistant｜>" + opener)
    assert (marker in text) if marker else "Reasoning Effort" not in text


def test_chat_logprobs_for_chosen_tokens(server):
    res = server.client().chat.completions.create(model=MODEL, messages=MESSAGES, max_tokens=5, logprobs=True,
                                                  top_logprobs=2, extra_body={"thinking": {"type": "disabled"}})
    content = res.choices[0].logprobs.content
    assert content and all(t.logprob <= 0 and len(t.top_logprobs) == 2 for t in content)
