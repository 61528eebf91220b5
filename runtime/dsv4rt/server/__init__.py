"""OpenAI-compatible HTTP server: schemas (protocol), routes (app), chat glue (chat), metrics."""
