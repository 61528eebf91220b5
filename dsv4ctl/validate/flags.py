"""Engine-level consistency: CUDA-graph batch sizes, parsers and flags that must exist in the
targeted engine version (reference README: flag renames across SGLang releases)."""

from __future__ import annotations

from dsv4ctl.validate.engine_flags import choices_by_dest, engine_args
from dsv4ctl.validate.registry import Hit, rule

V4_PARSERS = {"reasoning_parser": "deepseek-v4", "tool_call_parser": "deepseekv4"}
_FLAG = {"reasoning_parser": "--reasoning-parser", "tool_call_parser": "--tool-call-parser"}


@rule("CUDA-GRAPH-BS", "warning", "CUDA-graph max batch above max running requests",
      fix="set --cuda-graph-max-bs-decode to {max_running_requests} or less")
def cuda_graph_bs(ctx):
    """Graphs for batch sizes above --max-running-requests are captured but never replayed: they
    cost capture time and graph memory (the GB300 PD decode OOM in recipes §7 #3 came from cg 512
    with mrr 256)."""
    k = ctx.keys
    if k.cuda_graph_max_bs is None or k.max_running_requests is None:
        return None
    if k.cuda_graph_max_bs <= k.max_running_requests:
        return None
    return Hit(f"--cuda-graph-max-bs {k.cuda_graph_max_bs} > --max-running-requests {k.max_running_requests}",
               {"cuda_graph_max_bs": k.cuda_graph_max_bs, "max_running_requests": k.max_running_requests})


def _version(ctx) -> tuple[str, str]:
    return str(ctx.plan.engine), str(ctx.plan.engine_version)


@rule("PARSER-INVALID", "error", "reasoning / tool-call parser unknown to the engine version",
      fix="use {flag} {v4_parser}")
def parser_invalid(ctx):
    """The parser names are validated by argparse choices (note the asymmetry: `deepseek-v4` for
    reasoning, `deepseekv4` for tool calls); a wrong name stops the server at start-up."""
    if ctx.plan.engine != "sglang":
        return None
    choices = choices_by_dest(*_version(ctx))
    hits = []
    for dest, want in V4_PARSERS.items():
        val = getattr(ctx.keys, dest)
        if val is not None and dest in choices and val not in choices[dest]:
            hits.append(Hit(f"{_FLAG[dest]} {val} is not a parser of SGLang {ctx.plan.engine_version}",
                            {"flag": _FLAG[dest], "value": val, "v4_parser": want}))
    return hits


@rule("PARSER-NOT-V4", "warning", "parser that does not speak DeepSeek-V4's format",
      fix="use {flag} {v4_parser}")
def parser_not_v4(ctx):
    """V4 emits DSML tool calls (`<｜DSML｜tool_calls>`) and `<think>` reasoning; the V3/R1 parsers
    accept the flag but lose tool calls or leak reasoning into the content."""
    hits = []
    for dest, want in V4_PARSERS.items():
        val = getattr(ctx.keys, dest)
        if val is not None and val not in (want, "auto") and val in choices_by_dest(*_version(ctx)).get(dest, (val,)):
            hits.append(Hit(f"{_FLAG[dest]} {val} is not the V4 parser",
                            {"flag": _FLAG[dest], "value": val, "v4_parser": want}))
    return hits


@rule("ENGINE-RENDER", "error", "the plan cannot be rendered for its engine version",
      fix="{fix}")
def render_failed(ctx):
    """The plan is turned into argv with the engine version's flag vocabulary; an unknown version or
    a key that version cannot express stops here instead of at launch."""
    if ctx.plan.engine != "sglang" or ctx.role == "decode":  # one pass renders every role
        return None
    error = ctx.rendered.error
    if error is None:
        return None
    return Hit(error.message, {"fix": error.fix or "check the plan's engine_version and keys"})


@rule("ENGINE-FLAG-UNKNOWN", "error", "rendered flag missing from the targeted engine version",
      fix="pin an engine version that has {flag}, or drop the key that renders it")
def flag_unknown(ctx):
    """Every flag of the rendered command line is looked up in the engine version's real argparse
    dump; flags were renamed across releases (`--cuda-graph-max-bs` → `--cuda-graph-max-bs-decode`,
    `--enable-nsa-prefill-context-parallel` → `--enable-prefill-cp`), and an unknown or ambiguous
    flag kills the server at start-up."""
    if ctx.plan.engine != "sglang" or ctx.role == "decode":
        return None
    known = engine_args(*_version(ctx))
    flags = ctx.rendered.flags
    if known is None or flags is None:
        return None
    return [Hit(f"{flag} does not exist in SGLang {ctx.plan.engine_version}", {"flag": flag})
            for flag in sorted(set(flags) - known.keys())]


@rule("ENGINE-VERSION-UNCHECKED", "info", "no flag list for the targeted engine version",
      fix="add reference/{engine}-{version}-server-args.json (dump of the engine's parser)")
def version_unchecked(ctx):
    """Without the engine version's argparse dump, flag names cannot be checked offline; when the
    engine is importable, `serve` still checks the argv with the real parser."""
    if ctx.plan.engine != "sglang" or ctx.role == "decode" or engine_args(*_version(ctx)) is not None:
        return None
    if ctx.rendered.error is not None:  # ENGINE-RENDER already says the version is unknown
        return None
    return Hit(f"flags not checked against SGLang {ctx.plan.engine_version}",
               {"engine": ctx.plan.engine, "version": ctx.plan.engine_version})
