"""Per-op kernel registry: the PyTorch reference always registers, optional backends when they fit."""

from dsv4rt.kernels.registry import available, get, register, register_optional

__all__ = ["available", "get", "register", "register_optional"]
