"""Name resolution for every command that takes HOST: getaddrinfo() in the resolver's order,
without duplicates, failures as one line naming the EAI code."""

from __future__ import annotations

import socket

from sockdiag import platform
from sockdiag.core.errors import SockdiagError
from sockdiag.core.portspec import unbracket
from sockdiag.platform.errnos import from_oserror

_FAMILIES = {None: socket.AF_UNSPEC, 4: socket.AF_INET, 6: socket.AF_INET6}


def resolve(host: str, port: int, family: int | None, socktype: int, passive: bool = False) -> list[tuple]:
    """getaddrinfo() as (family, sockaddr) pairs in the resolver's order, without duplicates.
    A failure is one line: `resolve HOST: name or service not known (EAI_NONAME)`."""
    name = unbracket(host)
    try:
        infos = socket.getaddrinfo(name, port, _FAMILIES[family], socktype, 0,
                                   socket.AI_PASSIVE if passive else 0)
    except socket.gaierror as exc:
        raise SockdiagError(f"resolve {host}: {platform.describe_gaierror(exc)}") from None
    except UnicodeError:
        raise SockdiagError(f"resolve {host}: not a valid host name") from None
    except OSError as exc:
        raise from_oserror(f"resolve {host}", exc) from None
    out, seen = [], set()
    for af, _type, _proto, _canon, sockaddr in infos:
        key = (af, sockaddr[:2])
        if af in (socket.AF_INET, socket.AF_INET6) and key not in seen:
            seen.add(key)
            out.append((af, sockaddr))
    if not out:
        raise SockdiagError(f"resolve {host}: no IPv4 or IPv6 address")
    return out
