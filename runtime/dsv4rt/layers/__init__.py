"""Small building blocks of the V4 model: mHC, MoE, fused linears (RoPE/YaRN and the ops: `dsv4rt.ops`)."""
