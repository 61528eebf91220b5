"""kernels/pdl.py: when the decode kernels launch with programmatic dependent launch, and the switch that
benchmarks/gpu_decode.py uses for its side-by-side ratio. (The kernels' wait-before-read order is
checked in their sm_90 PTX, tests/test_triton_sm90.py; equal logits with and without, on a GPU, in
tests/test_gpu_decode.py.)"""

from __future__ import annotations

import pytest

pytest.importorskip("triton")


@pytest.fixture
def pdl(monkeypatch):
    from dsv4rt.kernels import pdl as module

    monkeypatch.setattr(module, "_DEFAULT", [])
    return module


def test_use_turns_pdl_off_and_never_on_where_unsupported(pdl, monkeypatch):
    monkeypatch.setattr(pdl, "_probe", lambda: True)
    assert pdl.enabled() and pdl.args() == {"PDL": True, "launch_pdl": True}
    with pdl.use(False):
        assert pdl.args() == {"PDL": False, "launch_pdl": False}
        with pdl.use(True):
            assert pdl.enabled()
        assert not pdl.enabled()
    assert pdl.enabled()
    monkeypatch.setattr(pdl, "_DEFAULT", [False])
    with pdl.use(True):
        assert not pdl.enabled()


def test_probe_says_no_when_switched_off_or_interpreted(pdl, monkeypatch):
    monkeypatch.setenv("DSV4RT_PDL", "0")
    assert not pdl._probe()
    monkeypatch.setenv("DSV4RT_PDL", "1")
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    assert not pdl._probe()


def test_inductor_follows_the_switch(pdl, monkeypatch):
    import torch._inductor.config as inductor_config

    from dsv4rt import compiled

    monkeypatch.setattr(pdl, "_DEFAULT", [True])
    assert compiled.inductor_pdl() == hasattr(inductor_config.triton, "enable_pdl")
    with pdl.use(False):
        assert not compiled.inductor_pdl()
    monkeypatch.setenv("DSV4RT_INDUCTOR_PDL", "0")
    assert not compiled.inductor_pdl()


def test_side_by_side_table_pairs_rows_by_batch():
    import gpu_decode

    res = {"pdl": {"triton": True, "inductor": True},
           "decode": [{"batch": 1, "step_ms": 0.8}, {"batch": 64, "step_ms": 3.6}],
           "decode_pdl_off": [{"batch": 64, "step_ms": 3.96}, {"batch": 1, "step_ms": 0.88}]}
    rows = gpu_decode.ratio_table(res, "decode_pdl_off", "plain launches").splitlines()[2:]
    assert [r.split() for r in rows] == [["64", "3.600", "3.960", "1.100"], ["1", "0.800", "0.880", "1.100"]]


def test_variant_flags_become_steps_in_order():
    import gpu_decode

    a = gpu_decode._args(["--model", "m", "--compile", "--pdl-off", "1,64", "--gemv-early1", "1", "--long-len", "0"])
    names = [name for name, _ in gpu_decode._steps(None, None, a, {}, [1, 64], print)]
    assert names.index("decode") < names.index("decode_pdl_off") < names.index("profile_compiled")
    assert names.index("decode") < names.index("decode_gemv_early1") < names.index("profile_compiled")
    a = gpu_decode._args(["--model", "m", "--compile"])
    variants = {"decode_pdl_off", "decode_gemv_early1"}
    assert not variants & {n for n, _ in gpu_decode._steps(None, None, a, {}, [1], print)}


def test_setting_variants_change_the_launchers_setting_only_inside():
    """--gemv-early1 and --cache-pool-always: the launchers read these at capture, so the variant's
    graphs get the other setting, and the table's own graphs keep theirs."""
    import gpu_decode
    from dsv4rt.kernels import triton_cache, triton_gemv

    for variant, module, name, inside in ((gpu_decode._gemv_early1, triton_gemv, "EARLY_TILES", 1),
                                          (gpu_decode._cache_pool_always, triton_cache, "POOL_ALWAYS", True)):
        before = getattr(module, name)
        assert before != inside
        with variant(None):
            assert getattr(module, name) == inside
        assert getattr(module, name) == before
