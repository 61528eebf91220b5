"""Official-format checkpoints: load (with FP8/FP4 dequantization), quantize, and make random ones."""
