"""Benchmarks against any OpenAI-compatible endpoint: load (latency/throughput) and accuracy (GSM8K, MMLU).

Every finished request is appended to `requests.jsonl` (flushed within 0.2 s and on every exit path);
`summary.json` is derived from it, so a crash or Ctrl-C loses nothing finished and `--resume`
continues a run. Requests go through the load generator's own HTTP/1.1 client (`rawhttp`, `sse`);
matplotlib is imported only by the modules that need it (report.plots), never here.
"""
