"""ModelArgs: the V4 model hyper-parameters, read from config.json in either spelling.

Field names follow the official `inference/config.json` (`dim`, `n_heads`, ...). `from_config_dict`
also reads the HF `config.json` spelling (`hidden_size`, `compress_ratios`, `rope_scaling`) and the
one transformers' `save_pretrained` writes (`layer_types`, `compress_rates`, `rope_parameters`).
Facts: shared/reference/v4-architecture.md §1 and §6.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

# transformers' layer_types -> the official per-layer compress ratio
_LAYER_TYPE_RATIO_KEYS = {
    "sliding_attention": None,
    "compressed_sparse_attention": ("compressed_sparse_attention", 4),
    "heavily_compressed_attention": ("heavily_compressed_attention", 128),
}


class ConfigError(ValueError):
    """A config.json that cannot describe a V4 model; the message names the file and the key."""


@dataclass
class ModelArgs:
    """V4 hyper-parameters. Field names match the official config JSON keys."""

    vocab_size: int = 129280
    dim: int = 4096
    n_layers: int = 43
    n_mtp_layers: int = 1
    norm_eps: float = 1e-6
    max_seq_len: int = 1048576
    bos_token_id: int = 0
    eos_token_id: int = 1
    # mqa
    n_heads: int = 64
    head_dim: int = 512
    rope_head_dim: int = 64
    q_lora_rank: int = 1024
    o_groups: int = 8
    o_lora_rank: int = 1024
    window_size: int = 128
    compress_ratios: list[int] = field(default_factory=list)  # n_layers + n_mtp_layers entries
    # rope / yarn (YaRN applies to compressed layers only)
    rope_theta: float = 10000.0
    compress_rope_theta: float = 160000.0
    rope_factor: float = 1.0  # 1.0 = no YaRN
    original_seq_len: int = 0
    beta_fast: float = 32.0
    beta_slow: float = 1.0
    # index
    index_n_heads: int = 64
    index_head_dim: int = 128
    index_topk: int = 512
    # moe
    n_routed_experts: int = 256
    n_activated_experts: int = 6
    n_shared_experts: int = 1
    moe_inter_dim: int = 2048
    n_hash_layers: int = 3
    score_func: str = "sqrtsoftplus"
    route_scale: float = 1.5
    swiglu_limit: float = 10.0
    # hc
    hc_mult: int = 4
    hc_sinkhorn_iters: int = 20
    hc_eps: float = 1e-6

    def __post_init__(self) -> None:
        if not self.compress_ratios:
            self.compress_ratios = [0] * (self.n_layers + self.n_mtp_layers)
        if len(self.compress_ratios) < self.n_layers:
            raise ConfigError(
                f"compress_ratios has {len(self.compress_ratios)} entries, need ≥ n_layers={self.n_layers}"
            )
        # the MTP layer is SWA-only when the list has no entry for it (v4-architecture.md §2.8)
        self.compress_ratios = list(self.compress_ratios) + [0] * max(
            0, self.n_layers + self.n_mtp_layers - len(self.compress_ratios)
        )
        if self.n_shared_experts != 1:
            raise ConfigError(f"n_shared_experts must be 1 (got {self.n_shared_experts})")
        if self.score_func not in ("sqrtsoftplus", "sigmoid", "softmax"):  # ops/moe.SCORE_FUNCS
            raise ConfigError(f"scoring_func '{self.score_func}' is not one of sqrtsoftplus, sigmoid, softmax")
        if (self.n_heads * self.head_dim) % self.o_groups:
            raise ConfigError(f"o_groups={self.o_groups} must divide n_heads*head_dim")

    @property
    def max_position_embeddings(self) -> int:
        return self.max_seq_len

    @classmethod
    def from_config_dict(cls, d: dict, source: str = "config.json") -> "ModelArgs":
        """Read the official (`dim`) or the HF / transformers (`hidden_size`) spelling."""
        kw = _from_hf(d, source) if "hidden_size" in d else dict(d)
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in kw.items() if k in known})

    @classmethod
    def from_pretrained_dir(cls, path: str | Path) -> "ModelArgs":
        cfg = Path(path) / "config.json"
        if not cfg.is_file():
            raise ConfigError(f"{cfg}: no config.json in the model directory")
        try:
            data = json.loads(cfg.read_text())
        except json.JSONDecodeError as e:
            raise ConfigError(f"{cfg}: not valid JSON ({e})") from e
        return cls.from_config_dict(data, str(cfg))

    def to_official_dict(self) -> dict:
        return asdict(self)


def _need(d: dict, key: str, source: str):
    if key not in d:
        raise ConfigError(f"{source}: missing key '{key}'")
    return d[key]


def _hf_ratios(d: dict, n_layers: int, n_mtp: int, source: str) -> list[int]:
    if "compress_ratios" in d:
        return list(d["compress_ratios"])
    rates = d.get("compress_rates") or {}
    ratios = []
    for t in d.get("layer_types") or []:
        if t not in _LAYER_TYPE_RATIO_KEYS:
            raise ConfigError(f"{source}: layer_types has unknown entry '{t}'")
        spec = _LAYER_TYPE_RATIO_KEYS[t]
        ratios.append(0 if spec is None else int(rates.get(spec[0], spec[1])))
    return ratios[:n_layers] + [0] * n_mtp


def _hf_rope(d: dict) -> dict:
    """rope_scaling (HF repo) or rope_parameters.compress (transformers) -> YaRN fields."""
    rp = d.get("rope_parameters") or {}
    ys = rp.get("compress") if isinstance(rp.get("compress"), dict) else (d.get("rope_scaling") or rp)
    kind = ys.get("rope_type", ys.get("type", "default")) if ys else "default"
    if kind != "yarn":
        return {}
    return {
        "rope_factor": float(ys["factor"]),
        "original_seq_len": int(ys["original_max_position_embeddings"]),
        "beta_fast": float(ys.get("beta_fast", 32)),
        "beta_slow": float(ys.get("beta_slow", 1)),
    }


def _hf_rope_dim(d: dict) -> int:
    if "qk_rope_head_dim" in d:
        return int(d["qk_rope_head_dim"])
    return int(d.get("head_dim", 512) * d.get("partial_rotary_factor", 0.125))


def _first(v):
    return v[0] if isinstance(v, list) else v


def _from_hf(d: dict, source: str) -> dict:
    n_layers = int(_need(d, "num_hidden_layers", source))
    n_mtp = int(d.get("num_nextn_predict_layers", 1))
    mlp_types = d.get("mlp_layer_types")
    n_hash = mlp_types.count("hash_moe") if mlp_types else int(d.get("num_hash_layers", 3))
    return {
        "vocab_size": _need(d, "vocab_size", source), "dim": d["hidden_size"], "n_layers": n_layers,
        "n_mtp_layers": n_mtp, "norm_eps": d.get("rms_norm_eps", 1e-6),
        "max_seq_len": d.get("max_position_embeddings", 1048576),
        "bos_token_id": _first(d.get("bos_token_id", 0)), "eos_token_id": _first(d.get("eos_token_id", 1)),
        "n_heads": _need(d, "num_attention_heads", source), "head_dim": d.get("head_dim", 512),
        "rope_head_dim": _hf_rope_dim(d), "q_lora_rank": _need(d, "q_lora_rank", source),
        "o_groups": d.get("o_groups", 8), "o_lora_rank": d.get("o_lora_rank", 1024),
        "window_size": d.get("sliding_window", 128),
        "compress_ratios": _hf_ratios(d, n_layers, n_mtp, source),
        "rope_theta": d.get("rope_theta", 10000.0), "compress_rope_theta": d.get("compress_rope_theta", 160000.0),
        **_hf_rope(d),
        "index_n_heads": d.get("index_n_heads", 64), "index_head_dim": d.get("index_head_dim", 128),
        "index_topk": d.get("index_topk", 512),
        "n_routed_experts": _need(d, "n_routed_experts", source),
        "n_activated_experts": d.get("num_experts_per_tok", 6), "n_shared_experts": d.get("n_shared_experts", 1),
        "moe_inter_dim": _need(d, "moe_intermediate_size", source), "n_hash_layers": n_hash,
        "score_func": d.get("scoring_func", "sqrtsoftplus"), "route_scale": d.get("routed_scaling_factor", 1.5),
        "swiglu_limit": d.get("swiglu_limit", 10.0), "hc_mult": d.get("hc_mult", 4),
        "hc_sinkhorn_iters": d.get("hc_sinkhorn_iters", 20), "hc_eps": d.get("hc_eps", 1e-6),
    }
