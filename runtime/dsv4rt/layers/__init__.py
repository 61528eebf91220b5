"""Small building blocks of the V4 model: RoPE/YaRN, mHC, MoE."""
