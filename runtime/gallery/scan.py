"""Scanning a gallery folder: which files are gallery crops, in a stable order.

Rules (each skipped path is reported with a one-line reason, never silently, except dot-entries):
- image files are those whose suffix is in ``runtime.preprocess.IMAGE_SUFFIXES`` (case-insensitive);
  other files are reported as "not an image";
- entries whose name starts with "." are ignored (the index folder ``.irreid/``, macOS ``._x.jpg``
  resource forks, editors' swap files);
- a symlink whose target resolves outside the gallery root is ignored unless ``follow_links``;
  symlinks inside the root are used (file links) but folder links are only descended with
  ``follow_links`` (with loop protection), so a file is never listed twice by default;
- broken symlinks, folders that cannot be listed and names that are not valid UTF-8 (the index
  header is UTF-8 JSON) are reported;
- paths are relative POSIX paths from the root, sorted, so the same folder always gives the same
  row order on every OS and every run.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path

from ..preprocess import IMAGE_SUFFIXES

__all__ = ["INDEX_DIRNAME", "GalleryFile", "ScanResult", "scan_gallery"]

#: the hidden folder inside a gallery root that holds its index (never scanned)
INDEX_DIRNAME = ".irreid"


@dataclass(frozen=True)
class GalleryFile:
    rel: str  # relative POSIX path from the root (the key in the index)
    path: str  # path to open (through the link, if any); a str, as Path() per file is slow on 1M files
    size: int
    mtime_ns: int


@dataclass
class ScanResult:
    root: Path
    files: list[GalleryFile]
    skipped: list[tuple[str, str]]  # (path, one-line reason)


def _inside(target: str, root_real: str) -> bool:
    return target == root_real or target.startswith(root_real.rstrip(os.sep) + os.sep)


def _utf8_ok(rel: str) -> bool:
    try:
        rel.encode("utf-8")
    except UnicodeEncodeError:  # undecodable bytes come back as lone surrogates
        return False
    return True


def _classify_link(full: str, root_real: str, follow_links: bool) -> str | None:
    """None if the link may be used, else the reason to skip it."""
    target = os.path.realpath(full)
    if not os.path.exists(target):
        return "broken symlink; remove it or fix its target"
    if not follow_links and not _inside(target, root_real):
        return f"symlink leading out of the gallery (to {target}); ignored, pass --follow-links to use it"
    return None


def scan_gallery(root: str | os.PathLike[str], follow_links: bool = False, option: str = "--gallery") -> ScanResult:
    """List the image files under ``root`` (see the module docstring for the rules). ``option``: the
    command-line option that named ``root``, for the messages (``embed --images``: issue 17 item 10)."""
    root_path = Path(root)
    what = "gallery folder" if option == "--gallery" else "folder"
    if not root_path.exists():
        raise FileNotFoundError(f"{root_path}: {what} not found; check the path")
    if not root_path.is_dir():
        raise NotADirectoryError(f"{root_path}: not a folder; {option} takes a folder of crops")
    root_real = os.path.realpath(root_path)
    files: list[GalleryFile] = []
    skipped: list[tuple[str, str]] = []
    seen_dirs = {root_real}

    def on_error(e: OSError) -> None:
        skipped.append((str(e.filename), f"cannot list the folder ({e.strerror}); fix its permissions"))

    for dirpath, dirnames, filenames in os.walk(root_path, onerror=on_error, followlinks=follow_links):
        keep_dirs = []
        for d in sorted(dirnames):
            full = os.path.join(dirpath, d)
            if d.startswith("."):
                continue
            if os.path.islink(full):
                reason = _classify_link(full, root_real, follow_links)
                if reason is None and not follow_links:
                    reason = "symlink to a folder inside the gallery; not descended (pass --follow-links)"
                if reason:
                    skipped.append((full, reason))
                    continue
                real = os.path.realpath(full)
                if real in seen_dirs or _inside(root_real, real):
                    skipped.append((full, "symlink loop or a folder already scanned; ignored"))
                    continue
                seen_dirs.add(real)
            keep_dirs.append(d)
        dirnames[:] = keep_dirs  # prune in place: os.walk descends only into these
        rel_dir = Path(os.path.relpath(dirpath, root_path)).as_posix()
        rel_prefix = "" if rel_dir == "." else rel_dir + "/"
        for name in sorted(filenames):
            if name.startswith("."):
                continue
            full = os.path.join(dirpath, name)
            item = _scan_file(full, rel_prefix + name, root_real, follow_links)
            if isinstance(item, GalleryFile):
                files.append(item)
            else:
                skipped.append((full, item))
    files.sort(key=lambda f: f.rel)
    return ScanResult(root=root_path, files=files, skipped=skipped)


def _scan_file(full: str, rel: str, root_real: str, follow_links: bool) -> GalleryFile | str:
    """A GalleryFile, or the reason the file is skipped."""
    if os.path.islink(full):
        reason = _classify_link(full, root_real, follow_links)
        if reason:
            return reason
    suffix = os.path.splitext(full)[1]
    if suffix.lower() not in IMAGE_SUFFIXES:
        return f"not an image (suffix {suffix or 'none'!r}); ignored"
    if not _utf8_ok(rel):
        return "file name is not valid UTF-8; rename it"
    try:
        st = os.stat(full)
    except OSError as e:
        return f"cannot stat ({e.strerror}); fix its permissions"
    if not stat.S_ISREG(st.st_mode):
        return "not a regular file; ignored"
    return GalleryFile(rel=rel, path=full, size=st.st_size, mtime_ns=st.st_mtime_ns)
