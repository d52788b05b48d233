"""Atomic outputs: a multi-file result (bag-eval's report) appears whole or not at all."""
import os

import pytest

from ecmnet_core.utils.atomic import atomic_write_text, staged_directory


def test_staged_directory_appears_whole_when_new(tmp_path):
    target = tmp_path / "a" / "b" / "report"
    with staged_directory(target) as stage:
        (stage / "x.txt").write_text("x")
        (stage / "sub").mkdir()
        assert not target.exists()
    assert sorted(p.name for p in target.iterdir()) == ["sub", "x.txt"]
    umask = os.umask(0)
    os.umask(umask)
    assert target.stat().st_mode & 0o777 == 0o777 & ~umask           # not mkdtemp's 0700
    assert [p.name for p in target.parent.iterdir()] == ["report"]          # no temporary left


def test_staged_directory_merges_into_an_existing_folder(tmp_path):
    target = tmp_path / "report"
    target.mkdir()
    (target / "keep.txt").write_text("user's")
    (target / "old.json").write_text("old")
    with staged_directory(target) as stage:
        atomic_write_text(stage / "old.json", "new")
    assert (target / "keep.txt").read_text() == "user's" and (target / "old.json").read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report"]


def test_failed_block_leaves_nothing_not_even_new_parents(tmp_path):
    (tmp_path / "existing").mkdir()
    (tmp_path / "existing" / "keep.txt").write_text("user's")
    for target in (tmp_path / "new" / "deeper" / "report", tmp_path / "existing"):
        with pytest.raises(RuntimeError):
            with staged_directory(target) as stage:
                (stage / "half.csv").write_text("partial")
                raise RuntimeError("no frame could be segmented")
    assert sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*")) == [
        "existing", "existing/keep.txt"]
