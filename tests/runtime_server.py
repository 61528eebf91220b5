"""The included runtime's OpenAI server for tests: the tiny checkpoint (written once per test process)
and uvicorn in a background thread on a free port. The `tiny_dir` fixture lives in conftest.py."""

from __future__ import annotations

import atexit
import functools
import shutil
import socket
import tempfile
import threading
import time
from pathlib import Path

MODEL = "dsv4-tiny"
API_KEY = "sk-test"


@functools.lru_cache(maxsize=1)
def tiny_checkpoint() -> Path:
    """Written once per test process, shared by every server test module that imports `tiny_dir`."""
    from dsv4rt.checkpoint.make import write_checkpoint

    root = Path(tempfile.mkdtemp(prefix="dsv4rt-tiny-"))
    atexit.register(shutil.rmtree, root, True)
    return write_checkpoint(root / "tiny", "tiny")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LiveServer:
    """uvicorn in a background thread on a free 127.0.0.1 port."""

    def __init__(self, state):
        import uvicorn

        from dsv4rt.server.app import create_app

        self.state, self.port = state, free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        cfg = uvicorn.Config(create_app(state), host="127.0.0.1", port=self.port, log_level="warning")
        self.server = uvicorn.Server(cfg)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self):
        self.thread.start()
        deadline = time.time() + 60
        while not self.server.started:
            assert time.time() < deadline, "server did not start"
            time.sleep(0.05)
        return self

    def __exit__(self, *exc):
        self.server.should_exit = True
        self.thread.join(timeout=30)

    def client(self, **kw):
        import openai

        return openai.OpenAI(base_url=f"{self.url}/v1", api_key=API_KEY, max_retries=0, **kw)


def start_server(tiny_dir, api_key=API_KEY, **cfg_kw) -> LiveServer:
    from dsv4rt.engine.config import EngineConfig
    from dsv4rt.server.build import build_state, load_model

    cfg = EngineConfig(model_path=str(tiny_dir), **{"context_length": 1024, **cfg_kw})
    model, args = load_model(cfg)
    return LiveServer(build_state(cfg, MODEL, api_key, model=model, args=args))
