"""vtdata.stages: a finished stage is skipped; a changed identity (arguments, an input file's content), a
missing output or a missing marker reruns that stage and every stage after it."""
from __future__ import annotations

import pytest

from vtdata.stages import Stage, reusable, run_stages


class Pipeline:
    """Three stages, each writing its output file; records what ran and whether upstream had changed."""

    def __init__(self, root):
        self.root, self.ran, self.fail = root, [], None
        self.args = {"a": ["a", "--n", "1"], "b": ["b"], "c": ["c"]}
        (root / "recipe.yaml").write_text("n: 1\n")

    def stages(self) -> list[Stage]:
        return [Stage(name, list(self.args[name]), [self.root / f"{name}.out"],
                      inputs=[self.root / "recipe.yaml"] if name == "a" else [])
                for name in ("a", "b", "c")]

    def execute(self, stage: Stage, tag: str, upstream_changed: bool) -> str:
        if stage.name == self.fail:
            raise RuntimeError("interrupted")
        self.ran.append((stage.name, upstream_changed))
        (self.root / f"{stage.name}.out").write_text("done")
        return f"{stage.name} ok"

    def run(self) -> list[str]:
        self.ran, said = [], []
        done = run_stages(self.stages(), self.root / "marks", self.execute, say=said.append)
        assert [d["reused"] for d in done] == [(n, False) not in self.ran and (n, True) not in self.ran
                                                for n in ("a", "b", "c")]
        assert len(said) == 3 and all(s.startswith(f"[{k}/3] ") for k, s in enumerate(said, 1))
        return [name for name, _ in self.ran]


def test_completed_stages_are_skipped_and_a_change_reruns_from_there(tmp_path):
    p = Pipeline(tmp_path)
    assert p.run() == ["a", "b", "c"] and p.ran[1:] == [("b", True), ("c", True)]
    assert p.run() == []                                        # everything done: nothing runs
    assert reusable(tmp_path / "marks", p.stages()[0])["summary"] == "a ok"

    p.args["b"] = ["b", "--more"]                               # changed arguments of the middle stage: its old
    assert p.run() == ["b", "c"] and p.ran == [("b", True), ("c", True)]  # outputs are stale, not interrupted
    assert p.run() == []

    (tmp_path / "recipe.yaml").write_text("n: 2\n")             # an input file's content changed
    assert p.run() == ["a", "b", "c"]

    (tmp_path / "c.out").unlink()                               # an output is gone: only that stage, resumed
    assert p.run() == ["c"] and p.ran == [("c", False)]

    (tmp_path / "marks" / "b.json").write_text("{cut short")    # a damaged marker counts as not done
    assert p.run() == ["b", "c"]


def test_a_stage_that_fails_leaves_no_marker_and_runs_again(tmp_path):
    p = Pipeline(tmp_path)
    p.fail = "b"
    with pytest.raises(RuntimeError):
        p.run()
    assert [x for x, _ in p.ran] == ["a"] and not (tmp_path / "marks" / "b.json").exists()
    p.fail = None
    assert p.run() == ["b", "c"] and p.ran[0] == ("b", False)   # a resumed, not a changed, upstream
