"""dsv4rt: the included DeepSeek-V4 runtime (model, checkpoints, kernels, engine, server)."""
