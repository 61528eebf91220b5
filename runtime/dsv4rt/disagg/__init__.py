"""Prefill/decode disaggregation for the included runtime: a prefill worker runs the prompt and writes
the request's whole V4 state into a decode worker's slot over Mooncake; the decode worker streams the
answer. The handshake is described in docs/runtime.md ("Prefill/decode disaggregation")."""
