"""Every image a run reads, readable before any compute: a fast check always, a full decode on request.

The fast check (always on) stats each file, parses its header with PIL and, for
JPEG and PNG, looks for the end marker (a truncated file lacks it; a file with
bytes after it is decoded to tell). The full decode (`decode=True`, the runners'
`--check-images`) decodes every pixel. Both run over a thread pool (PIL releases
the GIL while it reads and decodes). Timings are in README.md, "Dataset checks".
"""
from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from transfer.data.problems import Problems

# What a JPEG and a PNG end with (PNG: the IEND chunk with its CRC).
_JPEG_END, _PNG_END = b"\xff\xd9", b"IEND\xaeB`\x82"
_TAIL = 64  # bytes read from the end: room for the padding some writers put after the JPEG end marker
PROGRESS_FROM = 2000  # sets at least this large show a progress bar


@dataclass(frozen=True)
class ImageInfo:
    """What the check found for one file: its (width, height), or why it cannot be read."""

    path: Path
    size: tuple[int, int] | None = None
    problem: str | None = None


def _reason(e: BaseException) -> str:
    """A short, one-line reason from a PIL or OS error."""
    text = str(e).strip().splitlines()[0] if str(e).strip() else ""
    if isinstance(e, OSError) and e.strerror:
        text = e.strerror
    if isinstance(e, Image.UnidentifiedImageError):
        return "not an image (PIL does not recognise its header)"
    return f"{type(e).__name__}: {text[:160]}" if text else type(e).__name__


def _ends_properly(path: Path, fmt: str | None, file_size: int) -> bool:
    """False when a JPEG or PNG file lacks its end marker (truncated, or trailing bytes); True for other formats."""
    if fmt not in ("JPEG", "PNG"):
        return True
    with open(path, "rb") as f:
        f.seek(max(0, file_size - _TAIL))
        tail = f.read()
    if fmt == "PNG":
        return tail.endswith(_PNG_END)
    return tail.rstrip(b"\x00\r\n ").endswith(_JPEG_END)


def inspect_image(path: str | os.PathLike, decode: bool = False) -> ImageInfo:
    """Check one image file: exists, not empty, a header PIL parses and an end marker; every pixel if `decode`."""
    path = Path(path)
    try:
        file_size = path.stat().st_size
    except FileNotFoundError:
        return ImageInfo(path, problem="missing image")
    except OSError as e:
        return ImageInfo(path, problem=f"cannot read it ({_reason(e)})")
    if file_size == 0:
        return ImageInfo(path, problem="empty file (0 bytes)")
    try:
        with Image.open(path) as im:
            size, fmt = im.size, im.format
            if decode:
                im.load()
        if not decode and not _ends_properly(path, fmt, file_size):
            # Truncated, or a writer appended bytes after the end marker (harmless): decoding tells which.
            return inspect_image(path, decode=True)
    except Exception as e:  # noqa: BLE001 -- PIL raises OSError, SyntaxError, ValueError, struct.error... on bad files
        return ImageInfo(path, problem=_reason(e))
    return ImageInfo(path, size=size)


def scan_images(paths: Sequence[str | os.PathLike], decode: bool = False, workers: int | None = None,
                desc: str = "checking images") -> list[ImageInfo]:
    """`inspect_image` of every path (in order), over `workers` threads, with a progress bar on large sets."""
    paths = list(paths)
    if not paths:
        return []
    workers = workers or min(32, (len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
                                  else os.cpu_count() or 1) * 2)
    chunk = max(1, min(256, len(paths) // (workers * 4) or 1))
    chunks = [paths[i:i + chunk] for i in range(0, len(paths), chunk)]
    bar = None
    if len(paths) >= PROGRESS_FROM:
        from tqdm import tqdm

        tty = sys.stderr.isatty()
        bar = tqdm(total=len(paths), desc=f"{desc} ({'decode' if decode else 'headers'})", unit="img",
                   file=sys.stderr, mininterval=0.5 if tty else 30, dynamic_ncols=tty)

    def run(part: list) -> list[ImageInfo]:
        out = [inspect_image(p, decode) for p in part]
        if bar is not None:
            bar.update(len(part))
        return out

    try:
        with ThreadPoolExecutor(workers) as pool:
            return [info for part in pool.map(run, chunks) for info in part]
    finally:
        if bar is not None:
            bar.close()


def check_images(paths: Sequence[str | os.PathLike], problems: Problems, decode: bool = False,
                 what: str = "image") -> dict[Path, tuple[int, int]]:
    """Record a problem for every unreadable file of `paths`; return the (width, height) of the readable ones."""
    sizes = {}
    unique = list(dict.fromkeys(Path(p) for p in paths))  # an image listed by two splits is read once
    for info in scan_images(unique, decode, desc=f"checking {problems.fmt} {what}s"):
        if info.problem is None:
            sizes[info.path] = info.size
        elif info.problem == "missing image":
            problems.add(info.path, f"missing {what}")
        else:
            problems.add(info.path, f"unreadable {what}: {info.problem}")
    return sizes
