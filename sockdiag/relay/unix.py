"""Unix domain sockets for connect -U and listen -U: names, connecting, and a listener that
cleans up after itself.

A name is a filesystem path, or on Linux `@name`: an abstract name, with no file at all (it is
gone when the socket is). listen -U refuses a path a live socket already serves, replaces a stale
socket file (nobody listening: connect is refused), never removes anything that is not a socket,
and removes its own file on exit, if the file is still the one it made (same inode).
"""

from __future__ import annotations

import os
import socket
import stat
import tempfile

from sockdiag import platform
from sockdiag.core.errors import SockdiagError, UsageError
from sockdiag.platform.errnos import from_oserror


def address(name: str) -> str | bytes:
    """What bind()/connect() take for a -U name: the path, or b"\\0name" for @name (Linux)."""
    if not name:
        raise UsageError("-U: empty socket path")
    if "\0" in name:
        raise UsageError("-U: a path cannot contain a NUL byte")
    if name.startswith("@"):
        if not platform.abstract_unix_supported():
            raise UsageError("-U @NAME: abstract unix socket names exist on Linux only")
        return b"\0" + name[1:].encode("utf-8", "surrogateescape")
    return name


def _socktype(dgram: bool) -> int:
    return socket.SOCK_DGRAM if dgram else socket.SOCK_STREAM


class ClientSocket:
    """connect -U: a connected unix socket. A datagram client binds a name of its own in a private
    temporary directory (replies need an address to come back to), removed on close."""

    def __init__(self, name: str, dgram: bool):
        if not platform.unix_sockets_supported():
            raise UsageError("-U: this system has no unix domain sockets")
        self.peer = name
        self._tmpdir: str | None = None
        self.sock = socket.socket(socket.AF_UNIX, _socktype(dgram))
        try:
            if dgram:
                self._tmpdir = tempfile.mkdtemp(prefix="sockdiag-")
                self.sock.bind(os.path.join(self._tmpdir, "client.sock"))
            self.sock.connect(address(name))
        except OSError as exc:
            self.close()
            raise from_oserror(f"connect {name}", exc) from None
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        self.sock.close()
        if self._tmpdir is not None:
            for entry in os.listdir(self._tmpdir):
                os.unlink(os.path.join(self._tmpdir, entry))
            os.rmdir(self._tmpdir)
            self._tmpdir = None

    def __enter__(self) -> "ClientSocket":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class Listener:
    """listen -U: a bound (and, for streams, listening) unix socket whose file goes with it."""

    def __init__(self, name: str, dgram: bool):
        if not platform.unix_sockets_supported():
            raise UsageError("-U: this system has no unix domain sockets")
        self.name, self._addr = name, address(name)
        self._inode: tuple[int, int] | None = None
        if isinstance(self._addr, str):
            _clear_stale(self._addr, dgram)
        self.sock = socket.socket(socket.AF_UNIX, _socktype(dgram))
        try:
            self.sock.bind(self._addr)
            if isinstance(self._addr, str):
                st = os.stat(self._addr)
                self._inode = (st.st_dev, st.st_ino)
            if not dgram:
                self.sock.listen(socket.SOMAXCONN)
        except OSError as exc:
            self.close()
            raise from_oserror(f"listen {name}", exc) from None

    def close(self) -> None:
        self.sock.close()
        if self._inode is not None:  # remove our own file only, never one that replaced it
            try:
                st = os.lstat(self._addr)
                if (st.st_dev, st.st_ino) == self._inode and stat.S_ISSOCK(st.st_mode):
                    os.unlink(self._addr)
            except OSError:
                pass
            self._inode = None

    def __enter__(self) -> "Listener":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _clear_stale(path: str, dgram: bool) -> None:
    """Remove a socket file nobody serves; refuse a live one, and anything that is not a socket."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    except OSError as exc:
        raise from_oserror(f"listen {path}", exc) from None
    if not stat.S_ISSOCK(st.st_mode):
        raise SockdiagError(f"listen {path}: exists and is not a socket; not removed")
    with socket.socket(socket.AF_UNIX, _socktype(dgram)) as probe:
        try:
            probe.connect(path)
        except (ConnectionRefusedError, FileNotFoundError):
            pass  # stale: the socket file outlived its server
        except OSError as exc:
            if exc.errno is not None and platform.errno_name(exc.errno) == "EPROTOTYPE":
                raise SockdiagError(f"listen {path}: a live socket of another type serves it") from None
            raise from_oserror(f"listen {path}", exc) from None
        else:
            raise SockdiagError(f"listen {path}: a live socket already serves it (connect succeeded)")
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
