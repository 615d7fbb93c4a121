"""Crash-safe writing helpers: complete outputs or none, and no leftovers piling up."""

import pytest

from skinlesion.atomic import atomic_dir, atomic_file, atomic_files


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    path = tmp_path / "out.csv"
    path.write_text("old")
    with pytest.raises(KeyboardInterrupt), atomic_file(path) as tmp:
        tmp.write_text("half")
        raise KeyboardInterrupt
    assert path.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["out.csv"]


def test_the_next_write_removes_what_a_killed_one_left(tmp_path):
    (tmp_path / ".out.csv.tmp-abc123").write_text("half")  # as SIGKILL leaves it
    (tmp_path / ".folder.tmp-def456").mkdir()
    (tmp_path / ".other.csv.tmp-1").write_text("someone else's")
    with atomic_file(tmp_path / "out.csv") as tmp:
        tmp.write_text("whole")
    with atomic_dir(tmp_path / "folder") as tmp:
        (tmp / "a.txt").write_text("a")
    assert sorted(p.name for p in tmp_path.iterdir()) == [".other.csv.tmp-1", "folder", "out.csv"]
    assert (tmp_path / "out.csv").read_text() == "whole" and (tmp_path / "folder" / "a.txt").read_text() == "a"


def test_files_written_into_a_folder_keep_what_else_it_holds(tmp_path):
    folder = tmp_path / "prepared"
    folder.mkdir()
    (folder / ".gitignore").write_text("/a.npy\n")
    (folder / "a.npy").write_text("old")
    with pytest.raises(KeyboardInterrupt), atomic_files(folder, ["a.npy", "b.csv"]) as tmp:
        (tmp / "a.npy").write_text("half")
        raise KeyboardInterrupt
    assert (folder / "a.npy").read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["prepared"]
    expected = r"expected to write \['a.npy', 'b.csv'\], wrote \['a.npy'\]"
    with pytest.raises(RuntimeError, match=expected), atomic_files(folder, ["a.npy", "b.csv"]) as tmp:
        (tmp / "a.npy").write_text("new")
    assert (folder / "a.npy").read_text() == "old"
    with atomic_files(folder, ["a.npy", "b.csv"]) as tmp:
        (tmp / "a.npy").write_text("new")
        (tmp / "b.csv").write_text("b")
    assert sorted(p.name for p in folder.iterdir()) == [".gitignore", "a.npy", "b.csv"]
    assert (folder / "a.npy").read_text() == "new" and [p.name for p in tmp_path.iterdir()] == ["prepared"]
