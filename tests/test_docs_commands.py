"""The README's commands (set-up excluded) and its tour, run exactly as written in a temp dir; the docs'
shell examples checked against the CLI (every command and option exists) and the offline ones run."""

from __future__ import annotations

import json
import os
import re
import shlex
import socket
import subprocess
import time
from pathlib import Path

import pytest
import typer

from dsv4ctl.cli import app

ROOT = Path(__file__).resolve().parents[1]
OFFLINE = ("plan", "explain", "validate", "render", "schema", "doctor")  # no server, no network


def shell_blocks(md: Path) -> list[list[str]]:
    """Lines of each ``` / ```bash / ```text block; a trailing backslash joins the next line."""
    blocks = re.findall(r"```(?:bash|text|)\n(.*?)```", md.read_text(), re.S)
    return [[ln for ln in block.replace("\\\n", " ").splitlines() if ln.strip()] for block in blocks]


def readme_commands() -> list[str]:
    """The main job without its install step, then the tour, in order."""
    lines = [ln for block in shell_blocks(ROOT / "README.md") for ln in block]
    install = 'pip install torch==2.13.0 -e ".[runtime'
    main_job = [ln.split("&&", 1)[1].strip() for ln in lines if ln.startswith(install)]
    tour = [ln for ln in lines if ln.startswith("dsv4ctl ")]
    return main_job + tour


def test_readme_has_no_paths_outside_the_repository():
    for md in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        text = md.read_text()
        if md.name == "rules.md":  # generated from the rules' own messages
            continue
        assert "../shared" not in text and "shared/reference" not in text and "`reference/" not in text, md


@pytest.mark.slow
def test_readme_commands_run_as_written(tmp_path, tiny_dir):
    with socket.socket() as s:
        if s.connect_ex(("127.0.0.1", 30000)) == 0:
            pytest.skip("port 30000 is taken: the tour's `dsv4ctl serve` binds it")
    (tmp_path / "home").mkdir()
    (tmp_path / "home" / "tiny").symlink_to(tiny_dir)
    env = {**os.environ, "DSV4CTL_HOME": str(tmp_path / "home"), "COLUMNS": "80",
           "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "runtime"), os.environ.get("PYTHONPATH", "")])}
    commands = readme_commands()
    assert commands[0] == "dsv4ctl quickstart" and any("serve --detach" in c for c in commands)
    try:
        for cmd in commands:
            t0 = time.monotonic()
            res = subprocess.run(["bash", "-c", cmd], cwd=tmp_path, env=env, capture_output=True, text=True,
                                 timeout=900)
            if cmd == "dsv4ctl quickstart":
                check_quickstart(tmp_path, res, time.monotonic() - t0)
            expected = re.search(r"\(exit (\d)\)", cmd)  # a line the README says fails, with its code
            assert res.returncode == (int(expected.group(1)) if expected else 0), \
                f"{cmd}\n{res.stdout[-2000:]}\n{res.stderr[-3000:]}"
            table = [line for line in res.stdout.splitlines() if line[:1] in "┏┃│┡└"]
            assert max(map(len, table), default=0) <= 80, f"{cmd}: a table wider than 80 columns"
    finally:
        subprocess.run(["bash", "-c", "dsv4ctl stop latest"], cwd=tmp_path, env=env, capture_output=True)
    loads = [json.loads(ln) for p in (tmp_path / "runs" / "bench").glob("load-*/requests.jsonl")
             for ln in p.read_text().splitlines()]
    assert loads and all(abs(r["prompt_tokens"] - 256) <= 1 for r in loads if r["phase"] == "measure")


def check_quickstart(tmp_path, res, took: float) -> None:
    """Green, under 5 minutes, every phase shown, one report (HTML + JSON/CSV/PNG), the server stopped."""
    assert res.returncode == 0, res.stderr[-3000:]
    qs = next((tmp_path / "runs").glob("quickstart-*"))
    assert f"report: {qs / 'report.html'}" in res.stdout.replace("\n", "")
    html = (qs / "report.html").read_text()
    assert "random weights" in html and "accuracy is ~0 by design" in html and "data:image/png" in html
    summary = json.loads((qs / "summary.json").read_text())
    assert summary["gsm8k"]["num_questions"] == 6 and summary["mmlu"]["num_questions"] == 6
    assert [p["concurrency_point"] for p in summary["load"]["points"]] == [1, 4]
    assert summary["load"]["error_rate"] == 0 and summary["plan"]["hardware"] == "cpu"
    assert (qs / "summary.csv").read_text().startswith("section,row,column,value")
    assert len(list((qs / "plots").glob("*.png"))) == 3
    assert all(f"[{n}/8]" in res.stderr for n in range(1, 9)) and "random weights" in res.stderr
    server = next((tmp_path / "runs").glob("*-quickstart"))
    assert json.loads((server / "manifest.json").read_text())["status"] == "stopped"
    assert took < 300, f"quickstart took {took:.0f}s"


def resolve(tokens: list[str]):
    cmd = typer.main.get_command(app)
    while hasattr(cmd, "commands") and tokens and tokens[0] in cmd.commands:  # a group (typer vendors click)
        cmd, tokens = cmd.commands[tokens[0]], tokens[1:]
    return cmd, tokens


def doc_examples() -> list[tuple[str, str]]:
    out = []
    for md in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        out += [(md.name, ln) for block in shell_blocks(md) for ln in block if ln.startswith("dsv4ctl ")]
    return out


@pytest.mark.parametrize("doc,line", doc_examples())
def test_doc_examples_name_real_commands_and_options(doc, line):
    tokens = shlex.split(line.split("&&")[0].split("|")[0], comments=True)[1:]
    cmd, rest = resolve(tokens)
    assert not hasattr(cmd, "commands"), f"{doc}: {line}: no such command"
    known = {o for p in cmd.params for o in (*p.opts, *p.secondary_opts)}
    unknown = [t.split("=")[0] for t in rest if t.startswith("-") and t.split("=")[0] not in known]
    assert not unknown, f"{doc}: {line}: unknown options {unknown}"


def offline_examples() -> list[tuple[str, str]]:
    return [(d, ln) for d, ln in doc_examples()
            if shlex.split(ln, comments=True)[1] in OFFLINE and not re.search(r"\.\.\.|<|URL", ln)
            and all((ROOT / t).exists() for t in shlex.split(ln, comments=True) if "/" in t and t.endswith(".yaml"))]
    # (a file a doc names as the output of an earlier run, e.g. a tuned overlay, is checked for syntax only)


@pytest.mark.parametrize("doc,line", offline_examples())
def test_offline_doc_examples_run(doc, line, tmp_path):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "runtime")])}
    (tmp_path / "hardware_profiles").symlink_to(ROOT / "hardware_profiles")  # examples name repo files
    if "--plan plan.yaml" in line or line.startswith("dsv4ctl validate plan.yaml"):
        subprocess.run(["dsv4ctl", "plan", "--hw", "b200", "--variant", "pro", "-o", "plan.yaml"], cwd=tmp_path,
                       env=env, check=True, capture_output=True)
    res = subprocess.run(["bash", "-c", line], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    expected = re.search(r"\(exit (\d)\)", line)
    assert res.returncode == (int(expected.group(1)) if expected else 0), f"{doc}: {line}\n{res.stderr[-2000:]}"
