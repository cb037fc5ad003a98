"""The lifelong protocol with the FT editor on the tiny model, the report, and `factpatch eval`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

from editing.data.cases import EditCase, LocalityCase
from evaluation.lifelong import BASELINE, EditorRun, StreamConfig, curve_edits, run_lifelong, select_stream
from evaluation.results import write_report
from tests.helpers import TINY_EDITOR_CONFIGS
from tests.tiny import new_host

pytestmark = pytest.mark.usefixtures("one_thread")


def _record(i: int) -> dict[str, Any]:
    return {
        "case_id": i, "prompt": f"The capital of land {i} is", "target_new": f"City{i}",
        "subject": f"land {i}", "ground_truth": f"Town{i}", "rephrase_prompt": f"Land {i} has its capital in",
        "locality_prompt": f"The river of place {i} is", "locality_ground_truth": f"Town{i}",
    }


def _cases(n: int) -> list[EditCase]:
    return [
        EditCase(case_id=str(r["case_id"]), prompt=r["prompt"], target_new=r["target_new"],
                 target_true=r["ground_truth"], rephrases=(r["rephrase_prompt"],),
                 locality=(LocalityCase(r["locality_prompt"], r["locality_ground_truth"]),))
        for r in map(_record, range(n))
    ]


def test_curve_points_and_stream_selection() -> None:
    config = StreamConfig(turns=5, edits_per_turn=2, offset=1, curve_every=2)
    assert curve_edits(config) == [4, 8, 10]
    assert curve_edits(StreamConfig(turns=3, edits_per_turn=4)) == [12]
    assert [c.case_id for c in select_stream(_cases(12), config)] == [str(i) for i in range(1, 11)]
    with pytest.raises(ValueError, match="need 10 cases"):
        select_stream(_cases(10), config)


def test_ft_stream_beats_the_base_model_and_writes_a_report(tmp_path: Path) -> None:
    config = StreamConfig(turns=2, edits_per_turn=2, curve_every=1)
    runs = [EditorRun("ft", TINY_EDITOR_CONFIGS["ft"]), EditorRun("ft_missing_editor")]
    seen: list[list[str]] = []
    result = run_lifelong(new_host, _cases(5), runs, config,
                          on_editor=lambda so_far: seen.append([r.name for r in so_far.editors]))
    assert seen == [["ft"], ["ft", "ft_missing_editor"]]  # a stopped run keeps the editors it finished
    ft, broken = result.editors
    assert broken.error is not None and "ft_missing_editor" in broken.error
    assert ft.error is None and [t.turn for t in ft.turns] == [0, 1]
    assert [p.edits for p in ft.curve] == [2, 4] and len(ft.per_case) == 4
    assert ft.final is not None and result.baseline.final is not None
    assert ft.final["token"]["es"] > result.baseline.final["token"]["es"]
    assert result.baseline.final["token"]["ls"] == 1.0

    doc = write_report(result, tmp_path, {"dataset": {"path": "x"}}, per_case=True)
    assert {"results.json", "results.md", "curve_token.png", "curve_cf.png", "curve_em.png"} <= {
        p.name for p in tmp_path.iterdir()}
    stored = json.loads((tmp_path / "results.json").read_text())
    assert stored["schema"] == doc["schema"] == "factpatch.eval/1"
    assert set(stored["results"]) == {BASELINE, "ft", "ft_missing_editor"}
    entry = stored["results"]["ft"]
    assert entry["timing"]["turns"] == 2 and entry["timing"]["edits"] == 4
    assert entry["timing"]["artifact_bytes_mean"] > 0
    assert [row["turn"] for row in entry["per_case"]] == [0, 0, 1, 1]
    assert "| ft |" in (tmp_path / "results.md").read_text()


def test_cli_runs_end_to_end(tmp_path: Path, tiny_model_dir: Path) -> None:
    from cli.main import main

    data = tmp_path / "cases.json"
    data.write_text(json.dumps([_record(i) for i in range(6)]))
    extra = tmp_path / "ft.json"
    extra.write_text(json.dumps({"ft": {k: v for k, v in TINY_EDITOR_CONFIGS["ft"].items() if k != "steps"}}))
    out = tmp_path / "out"
    code = main([
        "eval", "--data", str(data), "--editors", "none,ft", "--turns", "2", "--edits-per-turn", "2",
        "--offset", "1", "--model", str(tiny_model_dir), "--data-dir", str(tmp_path / "dd"),
        "--editor-config", str(extra), "--editor-config", "ft.steps=20", "--out", str(out), "--threads", "1",
    ])
    assert code == 0
    doc = json.loads((out / "results.json").read_text())
    assert doc["dataset"]["format"] == "counterfact" and len(doc["dataset"]["sha256"]) == 64
    assert doc["config"]["editors"][0]["overrides"]["steps"] == 20
    assert doc["config"]["offset"] == 1 and doc["results"]["ft"]["error"] is None
    assert (out / "curve_cf_prob.png").stat().st_size > 0


def test_editor_config_parsing(tmp_path: Path) -> None:
    from cli.commands.eval import parse_editor_config, parse_editors

    path = tmp_path / "c.json"
    path.write_text(json.dumps({"rledit": {"net": {"rank": 8, "blocks": 2}}}))
    parsed = parse_editor_config(
        [str(path), "rledit.net.rank=16", "ft.lr=1e-3", "ft.module=model.layers.1.mlp.down_proj"],
        {"ft": {"steps": 3}},
    )
    assert parsed == {"rledit": {"net": {"rank": 16, "blocks": 2}},
                      "ft": {"steps": 3, "lr": 1e-3, "module": "model.layers.1.mlp.down_proj"}}
    assert parse_editors("ft, none,ft,rledit") == ["ft", "rledit"]
    with pytest.raises(ValueError, match="NAME.KEY=VALUE"):
        parse_editor_config(["steps=3"])


def test_edits_withhold_the_test_probes_unless_asked() -> None:
    from editing.artifacts import EditArtifact
    from evaluation.lifelong import _edit_turn

    class Recorder:
        name = "recorder"
        batches: list[Any] = []

        def compute(self, batch: Any) -> EditArtifact:
            self.batches.append(batch)
            return EditArtifact(editor="recorder", version="1", tensors={"x": torch.zeros(3)})

        def apply(self, artifact: EditArtifact) -> None:
            return None

    editor = Recorder()
    record = _edit_turn(editor, 0, _cases(2), with_probes=False)  # type: ignore[arg-type]
    _edit_turn(editor, 1, _cases(2), with_probes=True)  # type: ignore[arg-type]
    withheld, passed = editor.batches
    assert record.artifact_bytes == 12 and record.error is None
    assert [e.prompt for e in withheld.edits] == [c.prompt for c in _cases(2)]
    assert all(not e.rephrases and not e.locality for e in withheld.edits)
    assert all(e.rephrases and e.locality for e in passed.edits)


def test_git_info_names_this_checkouts_commit() -> None:
    import subprocess

    from evaluation.results import git_info

    root = Path(__file__).resolve().parents[2]
    if not (root / ".git").exists():
        pytest.skip("not a git checkout")
    head = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, check=True)
    assert git_info()["commit"] == head.stdout.strip()
