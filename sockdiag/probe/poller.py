"""How a scanner shard waits on its sockets: epoll, poll or select, as platform picks."""

from __future__ import annotations

import select
import time


class Poller:
    """The few poller operations the scanner needs, over epoll, poll or select."""

    def __init__(self, kind: str):
        self.kind = kind
        if kind == "epoll":
            self._p = select.epoll()
            self.OUT, self.IN = select.EPOLLOUT, select.EPOLLIN
        elif kind == "poll":
            self._p = select.poll()
            self.OUT, self.IN = select.POLLOUT, select.POLLIN
        else:
            self._read: set[int] = set()
            self._write: set[int] = set()
            self.OUT, self.IN = 1, 2

    def register(self, fd: int, events: int) -> None:
        if self.kind == "select":
            (self._write if events == self.OUT else self._read).add(fd)
        else:
            self._p.register(fd, events)

    def modify(self, fd: int, events: int) -> None:
        if self.kind == "select":
            self.forget(fd)
            self.register(fd, events)
        else:
            self._p.modify(fd, events)

    def forget(self, fd: int) -> None:
        """Before close(): epoll drops a closed descriptor by itself; poll and select do not."""
        if self.kind == "poll":
            self._p.unregister(fd)
        elif self.kind == "select":
            self._read.discard(fd)
            self._write.discard(fd)

    def poll(self, timeout: float) -> list[int]:
        if self.kind == "epoll":
            return [fd for fd, _ in self._p.poll(timeout)]
        if self.kind == "poll":
            return [fd for fd, _ in self._p.poll(timeout * 1000.0)]
        if not self._read and not self._write:
            time.sleep(timeout)
            return []
        # Windows reports a failed non-blocking connect in the "exceptional" set, not as writable.
        r, w, x = select.select(self._read, self._write, self._write, timeout)
        return list(set(r) | set(w) | set(x))

    def close(self) -> None:
        if self.kind == "epoll":  # poll and select hold no descriptor of their own
            self._p.close()
