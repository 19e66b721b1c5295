"""Reading and writing files inside a checkout without ever following a symlink.

Every path is opened one component at a time relative to the folder above it, with
`O_NOFOLLOW`, so a symlink anywhere in a repository's tree (to /etc, to another project) is
never dereferenced by the agent itself.
"""

from __future__ import annotations

import os
import secrets
import stat

from agent.paths import UnsafePath

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def open_folder(root: str, relative: str) -> int:
    """An fd of the folder `root/relative`; raises UnsafePath if any part is not a real folder."""
    fd = os.open(root, _DIR_FLAGS)
    try:
        for part in [p for p in relative.split("/") if p]:
            if part in (".", ".."):
                raise UnsafePath(f"{relative} has a '.' or '..' part")
            try:
                inner = os.open(part, _DIR_FLAGS, dir_fd=fd)
            except OSError as exc:
                raise UnsafePath(f"{relative}: {part} is not a folder ({exc.strerror})") from None
            os.close(fd)
            fd = inner
        return fd
    except BaseException:
        os.close(fd)
        raise


def read_small_file(root: str, relative: str, limit: int) -> bytes | None:
    """The content of the regular file `root/relative` if it has at most `limit` bytes, else
    None (also for a symlink, a folder, or nothing there)."""
    folder, _, name = relative.rpartition("/")
    try:
        dir_fd = open_folder(root, folder)
    except (UnsafePath, OSError):
        return None
    try:
        try:
            fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)
        except OSError:
            return None
        try:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode) or info.st_size > limit:
                return None
            return os.read(fd, limit + 1)
        finally:
            os.close(fd)
    finally:
        os.close(dir_fd)


def replace_file(root: str, relative: str, source: str, mode: int) -> None:
    """Put a copy of the file `source` at `root/relative` (replacing a regular file there), by a
    temporary file in the same folder and a rename; never through a symlink."""
    folder, _, name = relative.rpartition("/")
    dir_fd = open_folder(root, folder)
    try:
        try:
            info = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
        except FileNotFoundError:
            info = None
        if info is not None and not stat.S_ISREG(info.st_mode):
            raise UnsafePath(f"{relative} is not a regular file")
        temp = f".lfs-{secrets.token_hex(6)}.tmp"
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        out = os.open(temp, flags, mode, dir_fd=dir_fd)
        try:
            with open(source, "rb") as src:
                while chunk := src.read(1 << 20):
                    os.write(out, chunk)
        except BaseException:
            os.close(out)
            os.unlink(temp, dir_fd=dir_fd)
            raise
        os.close(out)
        os.rename(temp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
    finally:
        os.close(dir_fd)
