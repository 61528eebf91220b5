"""EngineConfig: the engine's settings, each default written once here (the CLI reads them)."""

from __future__ import annotations

from dataclasses import dataclass


SPEC_ALGORITHMS = ("EAGLE", "NEXTN")
MAX_SPEC_STEPS = 7  # a verify span (steps + 1) must fit the smallest cache ring: CSA's 2 x 4 tokens


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
    # speculative decoding with the MTP layer (SGLang's flag names): EAGLE chain drafts, top-k 1 only
    speculative_algorithm: str | None = None  # EAGLE (NEXTN: its alias); None: one token per step
    speculative_num_steps: int | None = None  # drafts per verify step; None: 1 when an algorithm is set
    speculative_eagle_topk: int | None = None  # only 1 (chains); > 1 would be tree drafting
    speculative_num_draft_tokens: int | None = None  # tokens a verify step checks; must be steps + 1

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
        self._check_speculative()

    @property
    def spec_steps(self) -> int | None:
        """Drafts per verify step, or None when speculative decoding is off."""
        if self.speculative_algorithm is None:
            return None
        return self.speculative_num_steps or 1

    def _check_speculative(self) -> None:
        """Refuse by name what the runtime's speculative decoding cannot do."""
        algo, steps = self.speculative_algorithm, self.speculative_num_steps
        if algo is None:
            if steps or self.speculative_num_draft_tokens or (self.speculative_eagle_topk or 1) > 1:
                raise ValueError("speculative_num_steps / _eagle_topk / _num_draft_tokens need "
                                 "speculative_algorithm EAGLE")
            return
        if algo.upper() not in SPEC_ALGORITHMS:
            raise ValueError(f"speculative_algorithm {algo!r} is not implemented "
                             "(only EAGLE / NEXTN with the MTP layer)")
        if not 1 <= self.spec_steps <= MAX_SPEC_STEPS:
            raise ValueError(f"speculative_num_steps must be in [1, {MAX_SPEC_STEPS}] (got {steps})")
        if (self.speculative_eagle_topk or 1) != 1:
            raise ValueError(f"speculative_eagle_topk={self.speculative_eagle_topk} (tree drafting) is not "
                             "implemented; the runtime drafts chains (top-k 1)")
        drafts = self.speculative_num_draft_tokens
        if drafts is not None and drafts != self.spec_steps + 1:
            raise ValueError(f"speculative_num_draft_tokens must be speculative_num_steps + 1 = {self.spec_steps + 1} "
                             f"for chain drafting (got {drafts})")

