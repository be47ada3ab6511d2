"""What every tool writes: checked before any work, written under a hidden temporary name, published
by a no-replace step at the end.

An existing path is replaced only with ``--force``, and a folder only when the tool says it is its
own (``replaceable``); a file that appears while the tool works is kept and the run fails. Folders
a failed run created are removed again (common.cli.on_failure), and temporary files of runs that
were killed are swept away.
"""
from __future__ import annotations

import os
import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

from .cli import on_failure
from .errors import UserError

PARTIAL = ".partial-"  # temporary names: .partial-<pid>-<final name>


class OutputError(UserError):
    """An output path that cannot or may not be written; one line saying which and what to do."""


def exists(path: Path) -> bool:
    return path.exists() or path.is_symlink()


def is_file(path: Path) -> bool:
    return path.is_file() or path.is_symlink()


def check_output(path: Path, force: bool, flag: str = "--output",
                 replaceable: Callable[[Path], bool] = is_file) -> None:
    """Before any work: ``path`` is free (or, with ``force``, replaceable) and its folder can be created."""
    if exists(path):
        if not force:
            raise OutputError(f"{path} already exists; pass --force to overwrite it or choose another {flag}")
        if not replaceable(path):
            raise OutputError(f"{path} is a folder this tool did not write, and --force replaces only the tool's "
                              f"own outputs; move it away or choose another {flag}")
    check_folder(path.parent, flag)


def check_folder(folder: Path, flag: str) -> None:
    """Before any work: ``folder`` is, or can be created as, a writable folder."""
    ancestor = next(p for p in (folder, *folder.parents) if exists(p) or p == p.parent)
    if not ancestor.is_dir():
        raise OutputError(f"cannot create output directory {folder}: {ancestor} is a file; choose another {flag}")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise OutputError(f"output directory {ancestor} is not writable; choose another {flag}")


def create_parents(path: Path) -> None:
    """Create the folders missing above ``path``; if the run fails they are removed again (when empty)."""
    missing = [p for p in (path.parent, *path.parent.parents) if not exists(p)]  # deepest first
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise OutputError(f"cannot create output directory {path.parent}: {err.strerror}") from None

    def remove_created() -> None:
        for folder in missing:
            try:
                folder.rmdir()
            except OSError:  # not empty: someone else's files, or a resumable run's
                return
    on_failure(remove_created)


def remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


# --- temporary names -------------------------------------------------------------------------------
def temporary_path(final: Path) -> Path:
    """A hidden sibling of ``final`` with the same suffix (runtimes look at suffixes)."""
    return final.with_name(f"{PARTIAL}{os.getpid()}-{final.name}")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def sweep_partials(folder: Path) -> None:
    """Remove the temporary files that runs killed outright (SIGKILL, power loss) left in ``folder``."""
    for path in folder.glob(PARTIAL + "*"):
        pid = path.name[len(PARTIAL):].split("-", 1)[0]
        if pid.isdigit() and not _alive(int(pid)):
            remove(path)


@contextmanager
def partial(final: Path) -> Iterator[Path]:
    """The temporary path to build ``final`` at (its folders created, stale partial files swept); on exit
    every temporary file of this run for ``final`` is gone (``<tmp stem>.fp32.onnx`` and the like too).
    A user error raised inside names ``final``, never the hidden temporary name."""
    create_parents(final)
    sweep_partials(final.parent)
    tmp = temporary_path(final)
    try:
        yield tmp
    except UserError as err:
        err.args = tuple(arg.replace(tmp.name, final.name) if isinstance(arg, str) else arg for arg in err.args)
        raise
    finally:
        prefix = tmp.name.removesuffix(final.suffix)
        for path in final.parent.glob(PARTIAL + "*"):
            if path.name.startswith(prefix):
                remove(path)


# --- publishing ------------------------------------------------------------------------------------
def _appeared(final: Path, flag: str) -> OutputError:
    return OutputError(f"{final} appeared while this run was working and was kept; nothing was written: pass "
                       f"--force to overwrite it or choose another {flag}")


def _claim_folder(tmp: Path, final: Path, flag: str) -> None:
    try:
        final.mkdir()  # atomic: fails if anything is there; the rename then replaces only this empty folder
    except FileExistsError:
        raise _appeared(final, flag) from None
    try:
        os.rename(tmp, final)
    except OSError:  # files were put into the claimed folder meanwhile
        raise _appeared(final, flag) from None


def _claim_file(tmp: Path, final: Path, flag: str) -> None:
    try:
        os.link(tmp, final)  # atomic: fails if anything is there by now
    except FileExistsError:
        raise _appeared(final, flag) from None
    except OSError:  # no hard links on this file system: claim the name, then rename over the claim
        try:
            os.close(os.open(final, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        except FileExistsError:
            raise _appeared(final, flag) from None
        os.replace(tmp, final)
        return
    os.unlink(tmp)


def publish(tmp: Path, final: Path, force: bool, flag: str = "--output") -> None:
    """Move the finished ``tmp`` (file or folder) to ``final``. Without ``force`` nothing there is ever
    replaced (OutputError). With ``force`` a file is replaced, a folder only if it is ``tmp``'s kind of
    output (the caller checked it); a file that became a folder meanwhile is refused."""
    if not force or not exists(final):
        (_claim_folder if tmp.is_dir() else _claim_file)(tmp, final, flag)
    elif is_file(final) and not tmp.is_dir():
        os.replace(tmp, final)
    elif final.is_dir() and tmp.is_dir():
        aside = temporary_path(final).with_name(temporary_path(final).name + ".replaced")
        os.rename(final, aside)
        os.rename(tmp, final)
        shutil.rmtree(aside, ignore_errors=True)
    else:
        raise OutputError(f"{final} became a {'folder' if final.is_dir() else 'file'} while this run was working "
                          f"and was kept; nothing was written: choose another {flag}")


def write_output(path: Path, text: str, force: bool, flag: str = "--output") -> Path:
    """Write ``text`` to ``path`` through a temporary file and :func:`publish`."""
    with partial(path) as tmp:
        tmp.write_text(text)
        publish(tmp, path, force, flag)
    return path
