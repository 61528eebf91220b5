"""The tune directory: everything one tune decided and measured, written as it happens.

    tune.json                  what is tuned (plan inputs, knobs, workload, SLO, objective, engine)
    candidates/<id>/           candidate.json, plan.yaml, the server's run dir (log), points/c<C>/
                               (bench's requests.jsonl + summary.json), result.json written last
    rejected.jsonl             candidates never launched (error findings), one line each
    final/                     baseline vs winner repeats and the accuracy gate; final.json last
    report.md, pareto.png, winner-plan.yaml

A candidate counts as finished only once its result.json exists (written atomically), so `--resume`
re-runs exactly the candidates that had not finished and never one that had."""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from dsv4ctl.bench.records import read_json, write_json
from dsv4ctl.errors import UserError

REQUEST, RESULT, REJECTED, FINAL = "tune.json", "result.json", "rejected.jsonl", "final.json"
# request fields that may change on --resume (how long to search, not what is searched)
_RESUMABLE = ("budget",)


class TuneDir:
    def __init__(self, path: Path):
        self.path = Path(path)

    @classmethod
    def open(cls, path: Path, request: dict[str, Any], resume: bool) -> TuneDir:
        """A new tune directory, or with --resume the same tune continued (its request must match)."""
        td = cls(path)
        req_file = td.path / REQUEST
        if req_file.exists() and not resume:
            raise UserError("directory already holds a tune", where=str(path),
                            fix="pass --resume to continue it, or choose another --out")
        if resume and not req_file.exists():
            raise UserError("nothing to resume: no tune.json", where=str(path), fix="drop --resume to start a tune")
        if resume:
            old = read_json(req_file)
            changed = sorted(k for k in set(old) | set(request) if k not in _RESUMABLE and old.get(k) != request.get(k))
            if changed:
                raise UserError(f"--resume with different {', '.join(changed)} than the tune being resumed",
                                where=str(req_file), fix="repeat the original options (only --budget may change)")
        try:
            (td.path / "candidates").mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UserError(f"cannot create the tune directory: {exc.strerror}", where=str(path),
                            fix="choose a writable --out") from None
        write_json(req_file, request)
        return td

    @property
    def request(self) -> dict[str, Any]:
        return read_json(self.path / REQUEST)

    def cand_dir(self, cand_id: str) -> Path:
        return self.path / "candidates" / cand_id

    def result(self, cand_id: str) -> dict[str, Any] | None:
        f = self.cand_dir(cand_id) / RESULT
        return read_json(f) if f.exists() else None

    def begin(self, cand_id: str, info: dict[str, Any], plan_yaml: str) -> Path:
        """A clean directory for a candidate about to run (a half-run one from a crash is discarded)."""
        d = self.cand_dir(cand_id)
        shutil.rmtree(d, ignore_errors=True)
        d.mkdir(parents=True)
        write_json(d / "candidate.json", info)
        (d / "plan.yaml").write_text(plan_yaml, encoding="utf-8")
        return d

    def finish(self, cand_id: str, result: dict[str, Any]) -> None:
        write_json(self.cand_dir(cand_id) / RESULT, result)

    def results(self) -> Iterator[dict[str, Any]]:
        for f in sorted((self.path / "candidates").glob(f"*/{RESULT}")):
            yield read_json(f)

    def reject(self, info: dict[str, Any]) -> None:
        if info["id"] in {r["id"] for r in self.rejected()}:
            return
        with open(self.path / REJECTED, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(info) + "\n")

    def rejected(self) -> list[dict[str, Any]]:
        f = self.path / REJECTED
        if not f.exists():
            return []
        out = []
        for line in f.read_text(encoding="utf-8").splitlines():
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:  # a line torn by a kill
                continue
        return out

    def final(self) -> dict[str, Any] | None:
        f = self.path / "final" / FINAL
        return read_json(f) if f.exists() else None

    def digest(self) -> str:
        """sha256 over tune.json, every result.json and final.json: names the evidence exactly."""
        h = hashlib.sha256()
        files = [self.path / REQUEST, *sorted((self.path / "candidates").glob(f"*/{RESULT}")),
                 self.path / "final" / FINAL]
        for f in files:
            if f.exists():
                h.update(f.relative_to(self.path).as_posix().encode() + b"\0" + f.read_bytes())
        return h.hexdigest()


def load(path: Path) -> TuneDir:
    td = TuneDir(path)
    if not (td.path / REQUEST).exists():
        raise UserError("not a tune directory (no tune.json)", where=str(path), fix="pass the --out of `dsv4ctl tune`")
    return td
