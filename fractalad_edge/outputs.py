"""Output files and folders that never lose a user's file.

The rule every command follows: it never deletes or overwrites what it did not write.

- :func:`check_output_folder` runs before any work: a symlinked ``--out``, a file in its
  place or an unwritable parent is a typed error, not a traceback after minutes of work.
- :class:`StagedOutput` builds a command's files in a sibling scratch folder
  (``.NAME.PID.partial``) and moves them into place at the end. A new folder is one
  ``rename``; an existing artifact of the same kind (``--force``) has only the files its
  manifest lists replaced, the manifest last, so a user's other files stay and a kill
  in between leaves no manifest that points at files of another export.
- Scratch folders are removed on failure; those left by a killed process (``kill -9``)
  carry a marker with its pid and are swept by the next command writing beside them.
- :func:`atomic_write_bytes` / :func:`atomic_replace`: write to a unique temporary name,
  fsync, rename, fsync the folder, as databases do for a commit, so a crash leaves the old
  file or the new one, never half of one.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import uuid
from collections.abc import Iterable, Sequence
from pathlib import Path

from fractalad_edge.errors import OutputPathError

__all__ = [
    "StagedOutput",
    "atomic_replace",
    "atomic_write_bytes",
    "atomic_write_text",
    "check_output_folder",
    "folder_is_empty",
    "fsync_dir",
    "inside",
    "sweep_stale_partials",
]

PARTIAL_SUFFIX = ".partial"
_OWNER_FILE = ".fractalad-partial"  # in every scratch folder: who made it (pid, host)


def fsync_dir(path: Path) -> None:
    """Make a rename or a new entry in ``path`` durable (no-op where folders cannot be opened)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # Windows: folders cannot be opened; NTFS journals the rename itself
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _fsync_file(path: Path) -> None:
    with open(path, "rb+") as handle:
        os.fsync(handle.fileno())


def atomic_replace(written: Path, target: Path) -> None:
    """Move a fully written file onto ``target``: fsync it, rename, fsync the folder."""
    _fsync_file(written)
    os.replace(written, target)
    fsync_dir(target.parent)


def temporary_sibling(target: Path) -> Path:
    """A unique temporary name beside ``target`` (same folder, so the rename is atomic)."""
    return target.with_name(f".{target.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")


def atomic_write_bytes(target: Path, data: bytes) -> None:
    tmp = temporary_sibling(target)
    try:
        tmp.write_bytes(data)
        atomic_replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_text(target: Path, text: str) -> None:
    atomic_write_bytes(target, text.encode("utf-8"))


def inside(folder: Path, relative: str | Path) -> Path | None:
    """``folder / relative`` if it stays inside ``folder`` (no ``..``, absolute path or symlink out), else None."""
    root = folder.resolve()
    candidate = (folder / relative).resolve()
    return candidate if candidate != root and root in candidate.parents else None


def folder_is_empty(folder: Path) -> bool:
    return not any(folder.iterdir())


def check_output_folder(out: Path, *, option: str = "--out") -> None:
    """Refuse a destination no command may write to, before any work starts."""
    if out.is_symlink():
        msg = (
            f"{option} {out} is a symbolic link (to {os.readlink(out)}); fractalad-edge does not write through links, "
            f"so it cannot replace or delete files elsewhere. Pass the real folder ({out.resolve()}) or a new one."
        )
        raise OutputPathError(msg)
    if out.exists() and not out.is_dir():
        msg = f"{option} {out} is a file, not a folder; pass a folder path (it is created if missing)"
        raise OutputPathError(msg)
    parent = next((p for p in (out, *out.parents) if p.exists()), Path("."))
    if not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
        msg = f"{option} {out}: {parent} is not a writable folder; choose a folder you can write to"
        raise OutputPathError(msg)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's live process
    except OSError:
        return True  # cannot tell (e.g. Windows without the right): keep the folder
    return True


def sweep_stale_partials(parent: Path) -> list[Path]:
    """Remove scratch folders in ``parent`` left by a process that is gone (killed mid-write).

    Only folders carrying this package's marker are touched, and only when the pid in it is
    dead on this host: a folder that merely ends in ``.partial`` is a user's and stays.
    """
    removed: list[Path] = []
    if not parent.is_dir():
        return removed
    host = socket.gethostname()
    for candidate in parent.glob(f".*{PARTIAL_SUFFIX}"):
        marker = candidate / _OWNER_FILE
        if candidate.is_symlink() or not marker.is_file():
            continue
        try:
            owner = json.loads(marker.read_text())
            pid, owner_host = int(owner["pid"]), str(owner["host"])
        except (OSError, ValueError, KeyError, TypeError):
            continue
        if owner_host != host or (pid != os.getpid() and _pid_alive(pid)) or candidate in StagedOutput.active:
            continue
        shutil.rmtree(candidate, ignore_errors=True)
        removed.append(candidate)
    return removed


class StagedOutput:
    """A sibling scratch folder in which a command builds its output, committed at the end.

    ``files`` holds what will be moved into ``out``; ``scratch`` is for intermediate files
    (it never reaches ``out``). Used as a context manager: the scratch folder is removed on
    leaving, committed or not.
    """

    active: set[Path] = set()  # scratch folders of this process in use right now

    def __init__(self, out: Path) -> None:
        self.out = out
        self.root = out.parent / f".{out.name}.{os.getpid()}.{uuid.uuid4().hex[:6]}{PARTIAL_SUFFIX}"
        self.files = self.root / "files"
        self.scratch = self.root / "scratch"

    def __enter__(self) -> StagedOutput:
        parent = self.out.parent
        parent.mkdir(parents=True, exist_ok=True)
        sweep_stale_partials(parent)
        try:
            self.root.mkdir()
            (self.root / _OWNER_FILE).write_text(json.dumps({"pid": os.getpid(), "host": socket.gethostname()}))
            self.files.mkdir()
            self.scratch.mkdir()
        except OSError as exc:
            shutil.rmtree(self.root, ignore_errors=True)
            msg = f"cannot create a scratch folder beside {self.out} ({exc}); choose a writable --out"
            raise OutputPathError(msg) from None
        StagedOutput.active.add(self.root)
        return self

    def __exit__(self, *_: object) -> None:
        StagedOutput.active.discard(self.root)
        shutil.rmtree(self.root, ignore_errors=True)

    def commit(self, names: Sequence[str], *, manifest: str, previous: Iterable[str] = ()) -> None:
        """Move ``names`` and then ``manifest`` from ``files`` into ``out``.

        ``previous`` are the files the replaced output's manifest listed: those not written
        again are removed (they were written by the same command), nothing else in ``out``
        is touched. Every moved file is fsynced before its rename.
        """
        folders = set()
        for name in (*names, manifest):
            _fsync_file(self.files / name)
            folders.add((self.files / name).parent)
        for folder in folders:
            fsync_dir(folder)
        try:
            if not self.out.exists() or (self.out.is_dir() and folder_is_empty(self.out)):
                if self.out.exists():
                    self.out.rmdir()  # an empty folder: rename onto it is not portable
                os.replace(self.files, self.out)
                fsync_dir(self.out.parent)
                return
            # The old manifest goes first: until the new one lands, the folder is not loadable,
            # rather than a manifest describing files of another export.
            (self.out / manifest).unlink(missing_ok=True)
            fsync_dir(self.out)
            new = set(names)
            for old in previous:
                path = inside(self.out, old)
                if old not in new and path is not None and path.is_file():
                    path.unlink()
            for name in (*names, manifest):
                target = self.out / name
                target.parent.mkdir(parents=True, exist_ok=True)
                os.replace(self.files / name, target)
                fsync_dir(target.parent)
        except OSError as exc:
            msg = f"cannot write into {self.out} ({exc}); check its permissions and free space"
            raise OutputPathError(msg) from None
