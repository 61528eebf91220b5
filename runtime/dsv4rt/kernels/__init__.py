"""Optional CUDA backends of the ops (`dsv4rt.ops`): each module registers its kernels against the op
functions when it imports, the hardware fits and its self-check passes (`ops.registry`). Nothing here
imports the model or its layers (tests/test_runtime_ops.py holds that)."""
