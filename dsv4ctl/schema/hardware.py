"""HardwareProfile: one YAML per platform under hardware_profiles/."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from dsv4ctl.schema.base import Strict

Quant = Literal["fp4", "fp8", "nvfp4", "bf16"]


class Nics(Strict):
    count: int = Field(ge=0)
    gbps: int = Field(ge=0)
    fabric: Literal["ib", "roce", "none"] = "ib"
    # HCA names used for PD KV transfer (`--disaggregation-ib-device`) when the cookbook names one.
    ib_device: str | None = None


class Kernels(Strict):
    """Kernel families the platform supports (gates recipes and validation rules)."""

    fp4_experts: bool = False
    megamoe: bool = False
    flashmla: bool = False
    trtllm_gen: bool = False
    deepep: bool = False


class HardwareProfile(Strict):
    name: str
    summary: str
    vendor: Literal["nvidia", "amd", "cpu"]
    gpu: str
    compute_capability: str
    hbm_gib: float = Field(gt=0)
    hbm_tbps: float = Field(ge=0)
    tflops_bf16: float = Field(ge=0)
    tflops_fp8: float = Field(ge=0)
    tflops_fp4: float = Field(ge=0)
    gpus_per_node: int = Field(ge=1)
    nvlink_domain: int = Field(ge=1)
    nvlink_gbps: float = Field(ge=0)
    nics: Nics
    mnnvl: bool = False
    kernels: Kernels
    default_quant: Quant
    quants: list[Quant]
    engine: Literal["sglang", "builtin"] = "sglang"
    images: dict[str, str] = Field(default_factory=dict)
    notes: str = ""
