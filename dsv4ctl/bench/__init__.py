"""Benchmarks against any OpenAI-compatible endpoint: load (latency/throughput) and accuracy (GSM8K, MMLU).

Every finished request is appended to `requests.jsonl` at once; `summary.json` is derived from it, so
a crash or Ctrl-C loses nothing and `--resume` continues a run. aiohttp/matplotlib are imported only
by the modules that need them (client, loadgen, report.plots), never here.
"""
