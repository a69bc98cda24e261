"""runtime.gallery.scan: which files a gallery scan lists, in what order, and what it reports."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from cli_fixtures import save_crop

from runtime.gallery.scan import INDEX_DIRNAME, scan_gallery


def test_lists_images_sorted_with_posix_relative_paths(tmp_path: Path) -> None:
    for rel in ("b/2.JPG", "a/1.png", "a/0.jpeg", "c.webp"):
        save_crop(tmp_path / rel, seed=1)
    (tmp_path / "readme.md").write_text("x")
    scan = scan_gallery(tmp_path)
    assert [f.rel for f in scan.files] == ["a/0.jpeg", "a/1.png", "b/2.JPG", "c.webp"]
    assert [Path(p).name for p, _ in scan.skipped] == ["readme.md"]
    assert "not an image" in scan.skipped[0][1]
    f = scan.files[0]
    assert f.size == (tmp_path / "a/0.jpeg").stat().st_size and f.mtime_ns > 0


def test_dot_entries_and_the_index_folder_are_not_scanned(tmp_path: Path) -> None:
    save_crop(tmp_path / "x.jpg", 1)
    save_crop(tmp_path / INDEX_DIRNAME / "thumb.jpg", 2)
    save_crop(tmp_path / "._x.jpg", 3)
    scan = scan_gallery(tmp_path)
    assert [f.rel for f in scan.files] == ["x.jpg"] and scan.skipped == []


def test_symlinks_out_of_the_root_need_follow_links(tmp_path: Path) -> None:
    root, outside = tmp_path / "g", tmp_path / "elsewhere"
    save_crop(root / "in.jpg", 1)
    save_crop(outside / "out.jpg", 2)
    save_crop(outside / "d" / "deep.jpg", 3)
    (root / "link_in.jpg").symlink_to(root / "in.jpg")
    (root / "link_out.jpg").symlink_to(outside / "out.jpg")
    (root / "dir_out").symlink_to(outside / "d")
    (root / "broken.jpg").symlink_to(tmp_path / "missing.jpg")
    scan = scan_gallery(root)
    assert [f.rel for f in scan.files] == ["in.jpg", "link_in.jpg"]
    reasons = {Path(p).name: r for p, r in scan.skipped}
    assert "leading out of the gallery" in reasons["link_out.jpg"] and "--follow-links" in reasons["link_out.jpg"]
    assert "leading out of the gallery" in reasons["dir_out"]
    assert "broken symlink" in reasons["broken.jpg"]
    followed = scan_gallery(root, follow_links=True)
    assert [f.rel for f in followed.files] == ["dir_out/deep.jpg", "in.jpg", "link_in.jpg", "link_out.jpg"]


def test_follow_links_survives_a_symlink_loop(tmp_path: Path) -> None:
    save_crop(tmp_path / "a" / "x.jpg", 1)
    (tmp_path / "a" / "loop").symlink_to(tmp_path)
    scan = scan_gallery(tmp_path, follow_links=True)
    assert [f.rel for f in scan.files] == ["a/x.jpg"]
    assert any("loop" in r for _, r in scan.skipped)


def test_non_utf8_file_names_are_reported(tmp_path: Path) -> None:
    save_crop(tmp_path / "ok.jpg", 1)
    bad = os.path.join(os.fsencode(tmp_path), b"caf\xe9.jpg")
    with open(bad, "wb") as f:
        f.write((tmp_path / "ok.jpg").read_bytes())
    scan = scan_gallery(tmp_path)
    assert [f.rel for f in scan.files] == ["ok.jpg"]
    assert "not valid UTF-8" in scan.skipped[0][1]


def test_missing_or_file_root_is_one_clear_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="gallery folder not found"):
        scan_gallery(tmp_path / "nope")
    save_crop(tmp_path / "x.jpg", 1)
    with pytest.raises(NotADirectoryError, match="not a folder"):
        scan_gallery(tmp_path / "x.jpg")


@pytest.mark.skipif(os.geteuid() == 0, reason="running as root: permission bits do not stop root, "
                    "so an unreadable folder cannot be simulated honestly here")
def test_unlistable_folder_is_reported(tmp_path: Path) -> None:
    save_crop(tmp_path / "locked" / "x.jpg", 1)
    save_crop(tmp_path / "y.jpg", 2)
    os.chmod(tmp_path / "locked", 0)
    try:
        scan = scan_gallery(tmp_path)
    finally:
        os.chmod(tmp_path / "locked", 0o755)
    assert [f.rel for f in scan.files] == ["y.jpg"]
    assert "cannot list" in scan.skipped[0][1]
