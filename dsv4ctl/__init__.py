"""dsv4ctl: plan, validate, serve, benchmark and tune DeepSeek-V4 deployments."""

__version__ = "0.1.0"
