"""EngineConfig: the engine's settings, each default written once here (the CLI reads them)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class EngineConfig:
    model_path: str
    device: str = "cpu"
    dtype: str = "float32"  # weights/activations dtype handed to load_model
    context_length: int | None = None  # None: the checkpoint's max_seq_len
    max_running_requests: int = 64
    max_queue: int = 256  # waiting requests beyond this get HTTP 503 + Retry-After
    chunked_prefill_size: int = 512  # prompt tokens per step (the chunked-prefill budget)
    kv_budget_bytes: int | None = None  # KV/state pool bytes; None: mem fraction (GPU) / 2 GiB (CPU)
    mem_fraction_static: float | None = None  # GPU only: weights + KV pool share of HBM
    enable_prefix_reuse: bool = True
    cuda_graphs: bool = True  # CUDA only: replay captured decode graphs (padded to a captured size)
    cuda_graph_max_bs: int | None = None  # largest decode batch replayed from a graph; None: the slot count
    cuda_graph_bs: tuple[int, ...] | None = None  # the plan's capture sizes; None: the runtime's ladder
    torch_compile: bool = False  # CUDA only: torch.compile the decode step's attention/mHC chains (dsv4rt/compiled.py)

    def __post_init__(self) -> None:
        for name in ("max_running_requests", "max_queue", "chunked_prefill_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1 (got {getattr(self, name)})")
        if self.context_length is not None and self.context_length < 2:
            raise ValueError(f"context_length must be >= 2 (got {self.context_length})")
        if self.mem_fraction_static is not None and not 0 < self.mem_fraction_static <= 1:
            raise ValueError(f"mem_fraction_static must be in (0, 1] (got {self.mem_fraction_static})")
        for name in ("kv_budget_bytes", "cuda_graph_max_bs"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1 (got {getattr(self, name)})")
        if self.cuda_graph_bs is not None and not all(b >= 1 for b in self.cuda_graph_bs):
            raise ValueError(f"cuda_graph_bs sizes must be >= 1 (got {list(self.cuda_graph_bs)})")
