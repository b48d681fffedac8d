"""The atomic folder helper: a staging folder beside the target, committed into place
in one rename, an old folder replaced only once the new one is in, and the names an
interrupted run leaves recognised (what a cohort cleans up)."""

from __future__ import annotations

import os

import pytest

from medrecon.atomic import atomic_write_path, commit_staging, create_staging, partial_target


def _fill(folder, text: str) -> None:
    (folder / "run.json").write_text(text)
    (folder / "meshes").mkdir()
    (folder / "meshes" / "liver.stl").write_text(text)


def _contents(folder) -> dict[str, str]:
    return {
        p.relative_to(folder).as_posix(): p.read_text() for p in folder.rglob("*") if p.is_file()
    }


def test_staging_folder_is_beside_the_target_and_recognised(tmp_path):
    target = tmp_path / "ct-ras"
    staging = create_staging(target)
    assert staging.parent == tmp_path and staging.is_dir() and not target.exists()
    assert staging.stat().st_mode & 0o777 == 0o755  # an ordinary folder once committed
    assert partial_target(staging.name) == "ct-ras"
    assert partial_target(staging.name, staging_only=True) == "ct-ras"


def test_partial_names_of_files_and_set_aside_folders(tmp_path):
    with atomic_write_path(tmp_path / "stats.json") as tmp:
        assert partial_target(tmp.name) == "stats"  # a file gives its target's stem
    assert partial_target(".ct-lps.old-123-456") == "ct-lps"
    assert partial_target(".ct-lps.old-123-456", staging_only=True) is None
    for name in ("ct-ras", ".hidden", ".other.tmp-", "notes.tmp-abc", ".a.b.tmp-x9"):
        assert partial_target(name) in (None, "a.b")
    assert partial_target(".a.b.tmp-x9") == "a.b"  # a study ID may hold dots


def test_commit_moves_the_folder_into_place(tmp_path):
    target = tmp_path / "out"
    staging = create_staging(target)
    _fill(staging, "new")
    commit_staging(staging, target)
    assert _contents(target) == {"run.json": "new", "meshes/liver.stl": "new"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_commit_replaces_an_old_folder_and_leaves_nothing_else(tmp_path):
    target = tmp_path / "out"
    target.mkdir()
    _fill(target, "old")
    staging = create_staging(target)
    _fill(staging, "new")
    commit_staging(staging, target)
    assert _contents(target) == {"run.json": "new", "meshes/liver.stl": "new"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # the old one is gone


def test_an_interrupted_commit_leaves_the_old_folder_whole(tmp_path, monkeypatch):
    target = tmp_path / "out"
    target.mkdir()
    _fill(target, "old")
    staging = create_staging(target)
    _fill(staging, "new")
    real_rename = os.rename

    def rename(src, dst):
        if os.fspath(src) == os.fspath(staging):  # the new folder's move into place fails
            raise OSError(28, "No space left on device", os.fspath(dst))
        real_rename(src, dst)

    monkeypatch.setattr(os, "rename", rename)
    with pytest.raises(OSError, match="No space left"):
        commit_staging(staging, target)
    assert _contents(target) == {"run.json": "old", "meshes/liver.stl": "old"}
    assert _contents(staging) == {"run.json": "new", "meshes/liver.stl": "new"}
    # Nothing set aside is left: the staging folder is the one partial entry.
    assert sorted(partial_target(p.name) for p in tmp_path.iterdir() if p != target) == ["out"]
