"""PD disaggregation pieces without processes: scheduler parking and held slots, the state regions and
their metadata row, the checkpoint identity, plan-role options, the bootstrap messages, and the three
commands `dsv4ctl serve` builds for a pd-disagg plan on the included runtime."""

from __future__ import annotations

import asyncio
import shutil

import pytest

from dsv4rt.engine.scheduler import Scheduler
from dsv4rt.engine.sequence import FinishReason, SamplingParams, Sequence
from dsv4rt.engine.slots import SlotManager


class _Remote:
    def __init__(self):
        self.ready, self.admitted = False, []

    def on_admit(self, seq):
        self.admitted.append(seq.slot)


def _sched(slots: int = 2) -> Scheduler:
    return Scheduler(SlotManager(slots), max_running=4, max_queue=8, chunk_size=16)


def test_a_remote_sequence_holds_a_clean_slot_but_is_never_scheduled_until_ready():
    sch = _sched()
    old = Sequence([1, 2, 3], SamplingParams())
    sch.add(old)
    sch.schedule()
    old.num_computed = 3
    sch.finish(old, FinishReason.STOP)  # slot 0 cached with [1, 2, 3]
    remote = Sequence([1, 2, 3, 4], SamplingParams(), remote=_Remote(), hold_slot=True)
    sch.add(remote)
    batch = sch.schedule()
    assert not batch and remote.remote.admitted == [remote.slot] and remote.num_computed == 0  # no prefix reuse
    assert remote.slot == 1 and not sch.has_work  # parked alone: the engine thread sleeps
    remote.remote.ready, remote.hold_slot, remote.num_computed = True, False, 4
    remote.append(9)
    assert sch.schedule().decode == [remote]


def test_a_held_slot_stays_out_of_the_pool_until_released():
    sch = _sched(1)
    seq = Sequence([1, 2], SamplingParams(max_tokens=1), hold_slot=True)
    sch.add(seq)
    sch.schedule()
    seq.num_computed = 2
    sch.finish(seq, FinishReason.LENGTH)
    assert sch.slots.num_available == 0 and seq.seq_id in sch.held
    sch.slots.check_integrity()
    assert sch.abort(seq.seq_id) is None  # finished: an abort cannot free it twice
    sch.release_held(seq.seq_id)
    sch.release_held(seq.seq_id)  # idempotent
    assert sch.slots.num_available == 1 and not sch.held
    sch.slots.check_integrity()


@pytest.fixture(scope="module")
def model(tiny_dir):
    import torch

    from dsv4rt.checkpoint.load import load_model

    m, _ = load_model(str(tiny_dir), device="cpu", dtype=torch.float32)
    m.allocate_cache(3, 1024)
    return m


def test_state_regions_cover_every_cache_buffer_and_trim_entries(model):
    from dsv4rt.disagg.state import SlotState

    st = SlotState(model, 3)
    names = [r.name for r in st.regions]
    assert "meta" in names and any(n.endswith("attn.win_kv") for n in names)
    assert any("indexer.compressor.entries" in n for n in names) and any(n.startswith("mtp.") for n in names)
    assert sum(r.slot_bytes for r in st.regions[:-1]) == model.cache_bytes_per_slot(1024)
    srcs, dsts, lens = st.plan(2, [0] * len(st.regions), 1, n_tokens=130)
    by_name = dict(zip([r.name for r in st.regions if r.used_bytes(130)], lens))
    hca = next(r for r in st.regions if r.ratio == 128)
    csa = next(r for r in st.regions if r.ratio == 4)
    assert by_name[hca.name] == 1 * hca.tensor[0, 0].numel() * 4  # one complete 128-block
    assert by_name[csa.name] == 32 * csa.tensor[0, 0].numel() * 4
    assert dsts[0] == st.regions[0].slot_bytes and srcs[0] == st.regions[0].tensor.data_ptr() + 2 * st.regions[0].slot_bytes
    assert not [r for r in st.regions if r.ratio and r.used_bytes(3)]  # no entry complete yet: nothing sent


def test_the_metadata_row_round_trips_room_token_and_logprobs(model):
    from dsv4rt.disagg.state import SlotState

    st = SlotState(model, 3)
    room = 2**64 - 3
    st.write_meta(1, room, 4095, (-0.25, [(4095, -0.25), (7, -1.5)]), 300)
    assert st.read_meta(1, True) == (room, 4095, 300, (-0.25, [(4095, -0.25), (7, -1.5)]))
    assert st.read_meta(1, False)[3] is None


def test_checkpoint_identity_changes_with_the_weights(tiny_dir, tmp_path):
    from dsv4rt.disagg.config import checkpoint_identity

    copy = shutil.copytree(tiny_dir, tmp_path / "copy")
    assert checkpoint_identity(copy) == checkpoint_identity(tiny_dir)
    shard = sorted(copy.glob("*.safetensors"))[-1]
    data = bytearray(shard.read_bytes())
    data[-1] ^= 0xFF  # the last block is always sampled
    shard.write_bytes(bytes(data))
    assert checkpoint_identity(copy) != checkpoint_identity(tiny_dir)


def test_plan_roles_map_to_pd_options(tmp_path):
    import yaml

    from dsv4rt.cli import UsageError, disagg_config, plan_options

    plan = {"keys": {"transfer_backend": "mooncake", "dist_init_addr": None},
            "roles": [{"name": "prefill", "keys": {"disagg_mode": "prefill", "ib_device": "mlx5_0",
                                                   "dist_init_addr": "127.0.0.1:30335"}},
                      {"name": "decode", "keys": {"disagg_mode": "decode"}}, {"name": "router", "keys": {}}]}
    path = tmp_path / "plan.yaml"
    path.write_text(yaml.safe_dump(plan))
    opts = plan_options(path, "prefill")
    cfg = disagg_config(opts)
    assert cfg.mode == "prefill" and cfg.protocol == "rdma" and cfg.ib_device == "mlx5_0"
    assert disagg_config(plan_options(path, "decode")).protocol == "tcp"
    with pytest.raises(UsageError, match="--plan-role"):
        plan_options(path)
    with pytest.raises(ValueError, match="only mooncake"):
        disagg_config({"disaggregation_mode": "decode", "disaggregation_transfer_backend": "nixl"})


class _Peer:
    """The writer side of a connection, only asked for the peer's address."""

    def get_extra_info(self, name):
        return ("10.0.0.7", 4242)


def test_a_bad_bootstrap_message_is_a_protocol_error():
    from dsv4rt.disagg.protocol import Link, ProtocolError, Register

    async def go():
        reader = asyncio.StreamReader()
        reader.feed_data(Register(room=5, slot=1, prompt_len=3).model_dump_json().encode() + b"\n")
        reader.feed_data(b'{"op": "register", "room": "x"}\n')
        reader.feed_eof()
        link = Link(reader, _Peer())
        assert (await link.recv()).room == 5
        with pytest.raises(ProtocolError, match="10.0.0.7:4242"):
            await link.recv()
        assert await link.recv() is None

    asyncio.run(go())


def test_serve_builds_prefill_decode_and_router_for_a_builtin_pd_plan(tmp_path, monkeypatch, tiny_dir):
    from dsv4ctl.launch import assemble
    from dsv4ctl.pipeline import check_plan
    from dsv4ctl.resolve import resolve_plan

    monkeypatch.setenv("DSV4CTL_PD_BOOTSTRAP_PORT", "41998")
    plan = resolve_plan("cpu", "tiny", "pd-disagg")
    plan = plan.model_copy(update={"keys": plan.keys.model_copy(update={"model_path": str(tiny_dir)})})
    launch = assemble.build_launch(check_plan(plan), assemble.ServeOptions(api_key="k"), engine="builtin",
                                   dry_run=True)
    pre, dec, rtr = launch.specs
    assert [s.role for s in launch.specs] == ["prefill", "decode", "router"] and launch.endpoint is rtr
    assert (pre.port, dec.port, rtr.port) == (30000, 30001, 8000)
    assert pre.argv[pre.argv.index("--plan-role") + 1] == "prefill" and "41998" in pre.argv
    assert dec.argv[dec.argv.index("--plan-role") + 1] == "decode" and "--port" in dec.argv
    i = rtr.argv.index("--prefill")
    assert rtr.argv[i + 1:i + 3] == ["http://127.0.0.1:30000", "41998"] and "--pd-disaggregation" in rtr.argv
    assert rtr.argv[rtr.argv.index("--decode") + 1] == "http://127.0.0.1:30001"
    # the workers get the key in their environment, never in argv; sglang-router only takes it on argv
    assert all("--api-key" not in s.argv and s.secret_env == {"DSV4RT_API_KEY": "k"} for s in (pre, dec))
    assert rtr.argv[rtr.argv.index("--api-key") + 1] == "k"


def test_builtin_pd_workers_on_one_gpu_node_get_their_own_gpu(monkeypatch):
    """issue 20: on a GPU host both runtime workers of a 1-node PD plan would share GPU 0."""
    from dsv4ctl.launch import pd
    from dsv4ctl.resolve import resolve_plan
    from dsv4ctl.schema.recipe import Toggles

    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    plan = resolve_plan("b200", "mini", "pd-disagg", Toggles(quant="fp4"))
    assert plan.engine == "builtin" and plan.nodes == 1
    specs = pd.pd_specs(plan, lambda port: ["w", str(port)], host="127.0.0.1", router_port=None, api_key=None,
                        env={"A": "1"})
    assert [s.env for s in specs] == [{"A": "1", "CUDA_VISIBLE_DEVICES": "0"},
                                      {"A": "1", "CUDA_VISIBLE_DEVICES": "1"}, {}]
    cpu = resolve_plan("cpu", "tiny", "pd-disagg")  # one role per (1-"GPU") node: nothing to pin
    specs = pd.pd_specs(cpu, lambda port: ["w", str(port)], host="127.0.0.1", router_port=None, api_key=None, env={})
    assert all("CUDA_VISIBLE_DEVICES" not in s.env for s in specs)


def test_chat_reads_the_spellings_sglang_router_sends():
    from dsv4rt.server.chat import sglang_spellings

    body = {"max_completion_tokens": 6, "chat_template_kwargs": {"thinking": False}}
    assert sglang_spellings(body) == {**body, "max_tokens": 6, "thinking": {"type": "disabled"}}
    own = {"max_tokens": 3, "max_completion_tokens": 6, "thinking": {"type": "enabled"},
           "chat_template_kwargs": {"thinking": False}}
    assert sglang_spellings(own) == own  # the request's own fields win
