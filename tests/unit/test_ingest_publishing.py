"""`twinstream publish` planning: which files, which subjects, which headers."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.ingest.publishing import PublishError, collect_images, content_type_of, plan
from twinstream.contracts import Op


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    for person in ("alice", "bob"):
        (tmp_path / person).mkdir()
        for i in range(2):
            (tmp_path / person / f"{i}.pgm").write_bytes(b"P5 1 1 255 x")
    (tmp_path / "notes.txt").write_text("not an image")
    return tmp_path


def test_directories_expand_to_their_image_files_only(tree: Path) -> None:
    files = collect_images([tree])
    assert [f.relative_to(tree).as_posix() for f in files] == [
        "alice/0.pgm",
        "alice/1.pgm",
        "bob/0.pgm",
        "bob/1.pgm",
    ]


def test_subject_from_dir_uses_each_files_directory(tree: Path) -> None:
    items = plan(collect_images([tree]), Op.ENROLL, subject_from_dir=True)
    assert [i.subject for i in items] == ["alice", "alice", "bob", "bob"]
    assert len({i.request_id for i in items}) == 4


def test_ops_that_need_a_subject_refuse_to_publish_without_one(tree: Path) -> None:
    with pytest.raises(PublishError, match="subject"):
        plan(collect_images([tree]), Op.VERIFY)
    assert plan(collect_images([tree]), Op.IDENTIFY)[0].subject == ""


def test_missing_paths_are_reported(tmp_path: Path) -> None:
    with pytest.raises(PublishError, match="no such file"):
        collect_images([tmp_path / "nope"])


def test_content_types_cover_portable_graymaps() -> None:
    assert content_type_of(Path("a.PGM")) == "image/x-portable-graymap"
    assert content_type_of(Path("a.jpg")) == "image/jpeg"
