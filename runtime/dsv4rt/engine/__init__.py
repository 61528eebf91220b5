"""Engine: sequences, slot bookkeeping and scheduling (torch-free); runner, sampler, async loop (torch)."""
