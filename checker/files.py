"""Files on disk: every input read bounded and typed, every output written whole or not at all.

Inputs (spec TOML, counterexample JSON) must be regular files of at most
`MAX_INPUT_BYTES`, in UTF-8, nested at most `MAX_NESTING` deep; anything else is an
InputError naming the file (a FIFO or /dev/zero is refused at once, never read).

Outputs are a set of files written into one directory: each is written to a temporary
file beside its target, and only when all are written are they renamed into place, with
SIGINT and SIGTERM held off for the renames, and the files they replace restored
if a rename fails. Temporary names end in `TEMP_SUFFIX` and carry the writer's pid, so a
run killed outright (SIGKILL) leaves files that the next export into that directory
recognises and removes.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import shutil
import stat
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .errors import InputError, SystemFailure, UsageError
from .interrupts import held
from .text import printable

MAX_INPUT_BYTES = 4 * 1024 * 1024
MAX_NESTING = 32
TEMP_SUFFIX = ".kvm-mmu-checker-partial"
_TEMP = re.compile(r"^\..*\.(\d+)" + re.escape(TEMP_SUFFIX) + r"$")

# -- inputs -------------------------------------------------------------------------------


def read_text(path: str | Path, source: str | None = None) -> str:
    """The UTF-8 text of a regular file of at most MAX_INPUT_BYTES."""
    source = source if source is not None else str(path)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOCTTY", 0))
    except OSError as e:
        raise InputError(source, "file", f"cannot be read ({e.strerror})") from None
    try:
        st = os.fstat(fd)
        if stat.S_ISDIR(st.st_mode):
            raise InputError(source, "file", "is a directory", "a regular file")
        if not stat.S_ISREG(st.st_mode):
            raise InputError(source, "file", "is not a regular file (a FIFO, a device or a socket)",
                             "a regular file")
        data = _read_bounded(fd, source)
    finally:
        os.close(fd)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise InputError(source, "file", f"is not UTF-8 text (byte 0x{data[e.start]:02x} at offset {e.start})",
                         "UTF-8 text") from None


def _read_bounded(fd: int, source: str) -> bytes:
    chunks, size = [], 0
    while size <= MAX_INPUT_BYTES:
        try:
            chunk = os.read(fd, 1 << 20)
        except OSError as e:
            raise InputError(source, "file", f"cannot be read ({e.strerror})") from None
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)
        size += len(chunk)
    raise InputError(source, "file", f"is larger than {MAX_INPUT_BYTES // (1024 * 1024)} MiB",
                     f"a file of at most {MAX_INPUT_BYTES} bytes")


def parse_toml(text: str, source: str) -> dict[str, Any]:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise InputError(source, "toml", f"not valid TOML ({printable(str(e))})") from None
    except (RecursionError, ValueError) as e:  # nesting, or an integer past str()'s digit limit
        raise InputError(source, "toml", f"not a TOML document this checker reads ({_limit(e)})") from None
    _check_nesting(data, source, "toml")
    return data


def parse_json(text: str, source: str) -> Any:
    def constant(name: str) -> None:
        raise ValueError(f"{name} is not a JSON number")

    try:
        data = json.loads(text, parse_constant=constant)
    except json.JSONDecodeError as e:
        raise InputError(source, "json", f"not valid JSON ({printable(str(e))})") from None
    except (RecursionError, ValueError) as e:
        raise InputError(source, "json", f"not a JSON document this checker reads ({_limit(e)})") from None
    _check_nesting(data, source, "json")
    return data


def _limit(e: BaseException) -> str:
    if isinstance(e, RecursionError):
        return f"nested deeper than {MAX_NESTING} levels"
    text = str(e)
    return "an integer of more than 4300 digits" if "4300" in text else printable(text)[:120]


def _check_nesting(data: Any, source: str, key: str) -> None:
    stack = [(data, 0)]
    while stack:
        value, depth = stack.pop()
        if depth > MAX_NESTING:
            raise InputError(source, key, f"nested deeper than {MAX_NESTING} levels")
        if isinstance(value, dict):
            stack.extend((v, depth + 1) for v in value.values())
        elif isinstance(value, list):
            stack.extend((v, depth + 1) for v in value)


# -- outputs ------------------------------------------------------------------------------


def check_output_dir(path: str, option: str = "--export") -> Path:
    """The directory an export will write into, checked before any work is done: it
    exists as a writable directory, or can be created (its nearest existing ancestor is
    a writable directory)."""
    if not path:
        raise UsageError(f"{option}: an empty path; give the directory to write into")
    target = Path(path)
    shown_path = printable(path)
    existing = target
    while not os.path.lexists(existing) and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        what = "does not exist" if not os.path.lexists(existing) else "is not a directory"
        where = shown_path if existing == target else f"{printable(str(existing))}, in {shown_path},"
        raise UsageError(f"{option}: {where} {what}; give a directory (it is created if missing)")
    if not os.access(existing, os.W_OK | os.X_OK):
        where = shown_path if existing == target else f"{printable(str(existing))} (to create {shown_path})"
        raise UsageError(f"{option}: {where} is not writable")
    return target


def temp_path(directory: Path, name: str) -> Path:
    return directory / f".{name}.{os.getpid()}{TEMP_SUFFIX}"


def remove_stale(directory: Path) -> list[Path]:
    """Remove temporary files that runs no longer alive left in `directory`."""
    removed = []
    try:
        entries = list(os.scandir(directory))
    except OSError:
        return removed
    for entry in entries:
        m = _TEMP.match(entry.name)
        if m is None or not entry.is_file(follow_symlinks=False) or _alive(int(m.group(1))):
            continue
        with contextlib.suppress(FileNotFoundError):
            os.unlink(entry.path)
            removed.append(Path(entry.path))
    return removed


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return pid > 0
    return True


def write_all(directory: Path, files: Mapping[str, str]) -> list[Path]:
    """Write every file of `files` (name -> text) into `directory`, or none of them."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise SystemFailure(f"cannot create {printable(str(directory))}: {e.strerror}") from None
    remove_stale(directory)
    temps: dict[str, Path] = {}
    try:
        for name, text in files.items():
            tmp = temp_path(directory, name)
            temps[name] = tmp
            _write(tmp, text.encode("utf-8"))
        with held():
            return _commit(directory, temps)
    except OSError as e:
        raise SystemFailure(f"cannot write into {printable(str(directory))}: {e.strerror}") from None
    finally:
        with held():  # a second Ctrl-C must not leave temporary files behind
            for tmp in temps.values():
                with contextlib.suppress(FileNotFoundError):
                    tmp.unlink()


def _write(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)  # the umask applies, as for open()
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)


def _commit(directory: Path, temps: Mapping[str, Path]) -> list[Path]:
    """Rename every temporary file onto its target; if one fails, put back what was there."""
    done: list[tuple[Path, Path | None]] = []  # (target, backup of what it replaced)
    try:
        for name, tmp in temps.items():
            target = directory / name
            backup = None
            if os.path.lexists(target):
                backup = temp_path(directory, name + ".old")
                _keep(target, backup)
            done.append((target, backup))
            os.replace(tmp, target)
    except OSError:
        for target, backup in reversed(done):
            with contextlib.suppress(OSError):
                if backup is not None:
                    os.replace(backup, target)
                else:
                    target.unlink()
        raise
    finally:
        for _, backup in done:
            if backup is not None:
                with contextlib.suppress(FileNotFoundError):
                    backup.unlink()
    return [target for target, _ in done]


def _keep(target: Path, backup: Path) -> None:
    try:
        os.link(target, backup, follow_symlinks=False)
    except OSError as e:
        if e.errno not in (errno.EPERM, errno.EXDEV, errno.EMLINK, errno.ENOTSUP):
            raise
        shutil.copy2(target, backup, follow_symlinks=False)
