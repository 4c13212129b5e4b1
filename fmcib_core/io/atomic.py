"""Write outputs under a temporary name and rename them into place only on success.

A write that fails for a reason of the output's place (a full disk, no permission, torch's zip
writer failing) is an :class:`OutputError`: one line that names the output, not the hidden
temporary file, with the cause. No temporary file is left behind, and a successful write also
removes the temporary files that an earlier, killed write of the same output left.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

__all__ = ["OutputError", "atomic_path", "write_outputs"]

log = logging.getLogger(__name__)

# torch.save's C++ zip writer reports a failed write as a RuntimeError, not an OSError.
_TORCH_WRITE_FAILED = re.compile(r"PytorchStreamWriter|file write failed")
_TORCH_ENFORCE = re.compile(r"^\[enforce fail at [^\]]*\]\s*\.?\s*")
# The random part of a tempfile.mkstemp name.
_RANDOM = r"\.tmp-[a-z0-9_]+"
_TEMP_NAME = re.compile(rf"\..*{_RANDOM}.*")


class OutputError(OSError):
    """An output cannot be written: ``{path}: cannot write ({cause}); {what to do}``.

    Attributes:
        path: the output that was not written.
        cause: what went wrong, in words (e.g. ``No space left on device``).
    """

    def __init__(self, path: str | Path, cause: str, errno: int | None = None) -> None:
        super().__init__(
            f"{path}: cannot write ({cause}); free disk space or choose another output folder"
        )
        self.path = Path(path)
        self.cause = cause
        self.errno = errno


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it to ``path`` when the block succeeds.

    The temporary name keeps the final suffixes (``.x.tmp-abc.parquet``) so that writers that
    infer the format from the name still work. On an exception the temporary file or folder is
    removed and ``path`` is left untouched, so a failed step never leaves a partial output.
    After a successful rename, temporary files or folders of the same output that a killed
    earlier write left behind are removed (the caller must be the only writer of ``path``).

    Args:
        path: the final output file or folder.

    Yields:
        The temporary path to write to (it does not exist yet).

    Raises:
        OutputError: the output's folder or temporary file cannot be made, the block raised an
            ``OSError`` about the temporary path (or one without a file name, such as a full
            disk) or torch's zip writer failed, or the rename failed. Other exceptions of the
            block pass through unchanged.
    """
    path = Path(path)
    suffix = "".join(path.suffixes)
    stem = path.name[: len(path.name) - len(suffix)] if suffix else path.name
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise OutputError(path, _cause(err, path), err.errno) from err
    try:
        fd, tmp_name = tempfile.mkstemp(prefix=f".{stem}.tmp-", suffix=suffix, dir=path.parent)
        os.close(fd)
    except OSError as err:  # the folder is path's: do not name the temporary file
        raise OutputError(path, err.strerror or _first_line(err), err.errno) from err
    tmp = Path(tmp_name)
    tmp.unlink()
    try:
        try:
            yield tmp
        except Exception as err:
            output_error = _as_output_error(err, path, tmp)
            if output_error is None:
                raise
            raise output_error from err
        if not tmp.exists():
            raise FileNotFoundError(f"{tmp}: nothing was written for {path}")
        try:
            os.replace(tmp, path)
        except OSError as err:
            raise OutputError(path, _cause(err, path, tmp), err.errno) from err
    finally:
        _remove(tmp)
    _remove_stale(path, stem, suffix)


def write_outputs(writers: Mapping[str | Path, Callable[[Path], object]]) -> None:
    """Write several outputs all or nothing, each through :func:`atomic_path`.

    Every writer writes its output's temporary path; the outputs are renamed into place only
    when all writers succeeded. An error is attributed to the output being written, and when a
    rename fails the outputs this call already renamed are removed again.

    Args:
        writers: output path -> a function that writes the file (or folder) at the path given.

    Raises:
        OutputError: an output cannot be written (see :func:`atomic_path`); nothing is left.
    """
    renamed: list[Path] = []

    def note(path: Path) -> Callable[..., None]:
        return lambda exc_type, *_: None if exc_type else renamed.append(path)

    try:
        with contextlib.ExitStack() as stack:
            for path, write in writers.items():
                stack.push(note(Path(path)))  # runs after that output's rename
                tmp = stack.enter_context(atomic_path(path))
                with _written_as(Path(path), tmp):
                    write(tmp)
    except OutputError:
        for path in renamed:
            _remove(path)
        raise


@contextlib.contextmanager
def _written_as(path: Path, tmp: Path) -> Iterator[None]:
    """Turn a write error of the block into an :class:`OutputError` naming ``path``."""
    try:
        yield
    except Exception as err:
        output_error = _as_output_error(err, path, tmp)
        if output_error is None:
            raise
        raise output_error from err


def _as_output_error(err: Exception, path: Path, tmp: Path) -> OutputError | None:
    """The :class:`OutputError` naming ``path`` that ``err`` amounts to, or None if none."""
    if isinstance(err, OutputError):
        # A writer that writes atomically itself named our temporary path: name the output.
        return OutputError(path, err.cause, err.errno) if _within(err.path, tmp) else None
    if isinstance(err, OSError):
        if err.filename is not None and not (
            _within(err.filename, tmp) or _within(err.filename, path)
        ):
            return None  # about another file (an input the block reads)
        return OutputError(path, _cause(err, path, tmp), err.errno)
    if isinstance(err, RuntimeError) and _TORCH_WRITE_FAILED.search(str(err)):
        return OutputError(path, _TORCH_ENFORCE.sub("", _first_line(err)))
    return None


def _cause(err: OSError, *ours: Path) -> str:
    """``err``'s reason in words, with the file it names unless that is ``path`` or its temp."""
    if not err.strerror:
        return _first_line(err)
    if err.filename is None or any(_within(err.filename, p) for p in ours):
        return err.strerror
    return f"{err.strerror}: {os.fsdecode(err.filename)}"


def _first_line(err: BaseException) -> str:
    lines = str(err).strip().splitlines()
    return lines[0] if lines else type(err).__name__


def _within(name: object, folder: Path) -> bool:
    """Whether the file name ``name`` is ``folder`` or inside it (non-paths count as inside)."""
    if not isinstance(name, (str, bytes, os.PathLike)):
        return True
    name, folder = os.path.abspath(os.fsdecode(name)), os.path.abspath(folder)
    return name == folder or name.startswith(folder + os.sep)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(OSError):
            path.unlink(missing_ok=True)


def _remove_stale(path: Path, stem: str, suffix: str) -> None:
    """Remove the temporary files of ``path`` (also those of a writer's nested temporary path)
    that a killed earlier write left behind."""
    if any(_TEMP_NAME.fullmatch(part) for part in path.parent.parts):
        return  # inside a temporary folder of ours: fresh, nothing stale (and no rescans)
    name, end = re.escape(stem), re.escape(suffix)
    stale = re.compile(rf"\.(?:{name}{_RANDOM}|\.{name}{_RANDOM}{_RANDOM}){end}")
    with contextlib.suppress(OSError):
        for sibling in path.parent.iterdir():
            if stale.fullmatch(sibling.name):
                _remove(sibling)
                log.info("removed %s, left by an interrupted write of %s", sibling, path)
