"""`dsv4ctl runtime train-draft` on the tiny checkpoint: the MTP layer learns the target's picks, the
checkpoint written carries it (only its MTP shard differs), and the acceptance is measured from it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

from dsv4ctl.cli import app
from dsv4rt.checkpoint.load import load_model
from dsv4rt.train_draft import generate, random_prompts, train

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))


def test_training_fits_the_targets_picks(tiny_dir):
    torch.set_num_threads(1)
    model, args = load_model(tiny_dir)
    data = generate(model, random_prompts(4, 8, args.vocab_size, 0), 16)
    assert torch.equal(data.picks[:, 7:-1], data.ids[:, 8:])  # greedy: the picks are the continuation
    curve = train(model, data, steps=25, batch=4, lr=3e-3, seed=0)
    assert curve[0][2] < 0.1 and curve[-1][2] > 0.5 and curve[-1][1] < curve[0][1] / 2


def test_train_draft_writes_the_mtp_shard_and_measures(tiny_dir, tmp_path):
    out = tmp_path / "draft"
    res = CliRunner().invoke(app, ["runtime", "train-draft", "--model", str(tiny_dir), "--out", str(out), "--seqs", "4",
                                   "--new-tokens", "6", "--steps", "2", "--batch", "2", "--eval-seqs", "2",
                                   "--spec-steps", "2", "--format", "json"])
    assert res.exit_code == 0, res.output
    report = json.loads(res.stdout)
    for when in ("before", "after"):
        for prompts in ("held_out", "seen"):
            r = report[when][prompts]
            assert 1.0 <= r["accept_length"] <= 3.0 and len(r["acceptance_rates"]) == 2
    shard = "model-mtp-000.safetensors"
    new, old = load_file(out / shard), load_file(tiny_dir / shard)
    assert new.keys() == old.keys() and any(not torch.equal(new[k], old[k]) for k in new)
    assert (out / "model-layers-000.safetensors").read_bytes() == (tiny_dir / "model-layers-000.safetensors").read_bytes()
    load_model(out)  # strict: every tensor present and shaped


def test_train_draft_refuses_a_bad_checkpoint_in_one_line(tmp_path):
    res = subprocess.run([sys.executable, "-m", "dsv4ctl", "runtime", "train-draft", "--model", str(tmp_path),
                          "--out", str(tmp_path / "o")], capture_output=True, text=True, timeout=120)
    assert res.returncode == 2 and "Traceback" not in res.stderr and "config.json" in res.stderr
    assert not (tmp_path / "o").exists()


def test_gpu_mtp_benchmark_runs_on_a_cpu_at_small_size(tiny_dir, tmp_path, capsys):
    import gpu_mtp  # benchmarks/ (put on the path below)

    res = gpu_mtp.main(["--model", str(tiny_dir), "--draft", str(tiny_dir), "--device", "cpu", "--batches", "1,2",
                        "--mtp-steps", "0,1", "--prompt-len", "8", "--new-tokens", "4", "--repeats", "1",
                        "--json", str(tmp_path / "mtp.json")])
    rows = {(r["batch"], r["mtp_steps"]): r for r in res["rows"]}
    assert set(rows) == {(1, 0), (2, 0), (1, 1), (2, 1)}
    assert all(r["same_as_off"] == 1.0 and r["tok_s"] > 0 for r in rows.values())  # float32: identical
    assert 1.0 <= rows[2, 1]["accept_length"] <= 2.0 and len(rows[2, 1]["acceptance_rates"]) == 1
    assert "goal" in capsys.readouterr().out and json.loads((tmp_path / "mtp.json").read_text())["rows"]
