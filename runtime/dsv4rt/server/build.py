"""Load checkpoint + tokenizer and assemble the ServerState (model, engine thread, chat, metrics)."""

from __future__ import annotations

import json
from pathlib import Path

from dsv4rt.engine.config import EngineConfig
from dsv4rt.engine.engine import AsyncEngine, build_engine
from dsv4rt.server.app import ServerState, gauges
from dsv4rt.server.chat import ChatFrontend
from dsv4rt.server.metrics import Metrics


def eos_token_ids(model_dir: Path, config_eos: int) -> tuple[int, ...]:
    """config.json's eos plus generation_config.json's (an int or a list there)."""
    ids = {config_eos}
    gen = model_dir / "generation_config.json"
    if gen.is_file():
        eos = json.loads(gen.read_text()).get("eos_token_id")
        ids.update(eos if isinstance(eos, list) else [] if eos is None else [eos])
    return tuple(sorted(ids))


def load_model(cfg: EngineConfig):
    import torch

    from dsv4rt.checkpoint.load import load_model as load

    model, args = load(cfg.model_path, device=cfg.device, dtype=getattr(torch, cfg.dtype))
    return model.eval(), args


def build_state(cfg: EngineConfig, served_model_name: str, api_key: str | None = None,
                model=None, args=None) -> ServerState:
    """`model`/`args` may be passed in (tests share one loaded model across servers)."""
    from tokenizers import Tokenizer

    if model is None:
        model, args = load_model(cfg)
    model_dir = Path(cfg.model_path)
    tok_path = model_dir / "tokenizer.json"
    if not tok_path.is_file():
        raise FileNotFoundError(f"{tok_path}: the checkpoint has no tokenizer.json")
    tokenizer = Tokenizer.from_file(str(tok_path))
    eos = eos_token_ids(model_dir, args.eos_token_id)
    engine = build_engine(cfg, model, args.max_seq_len,
                          decode=lambda ids: tokenizer.decode(ids, skip_special_tokens=True))
    ctx = engine.context_length
    state = ServerState(engine=None, chat=ChatFrontend(str(tok_path), served_model_name, ctx), tokenizer=tokenizer,
                        model_name=served_model_name, context_length=ctx, eos_token_ids=eos,
                        metrics=None, vocab_size=args.vocab_size, api_key=api_key, model_path=str(model_dir))
    spec = engine.runner.spec
    state.metrics = Metrics(lambda: gauges(state), spec.stats if spec is not None else None)
    state.engine = AsyncEngine(engine, on_step=state.metrics.on_step)
    return state
