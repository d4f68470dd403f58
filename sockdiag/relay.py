"""connect and listen: the netcat core. Name resolution, connecting, listening, and dispatch to
the TCP relay (relay_stream), the servers for -k/--echo/--exec (servers) and UDP (relay_udp)."""

from __future__ import annotations

import socket

from sockdiag import platform
from sockdiag.errors import SockdiagError, UsageError, from_oserror
from sockdiag.portspec import format_hostport
from sockdiag.relay_stream import StreamOptions, relay
from sockdiag.relay_access import AccessList, check_exec_safety, exec_command, format_peer
from sockdiag.servers import ServerConfig, accept_one, serve
from sockdiag.status import ExitStatus

_FAMILIES = {None: socket.AF_UNSPEC, 4: socket.AF_INET, 6: socket.AF_INET6}


# --- entry points -------------------------------------------------------------------------------

def run_connect(args, env) -> int:
    """`sockdiag connect HOST PORT`: relay stdin/stdout through one connection."""
    _check_common(args)
    if args.udp:
        from sockdiag.relay_udp import run_udp_connect

        return run_udp_connect(args, env)
    sock, peer = connect_tcp(args, env)
    with sock:
        stats = relay(sock, env, peer, stream_options(args, env))
    env.info(f"closed, {stats.summary()}")
    return ExitStatus.OK


def run_listen(args, env) -> int:
    """`sockdiag listen PORT`: one relayed connection, or a server with -k / --echo / --exec."""
    _check_common(args)
    _check_listen(args)
    acl = AccessList.parse(args.allow, args.deny)
    command = exec_command(args)
    if args.udp:
        from sockdiag.relay_udp import run_udp_listen

        return run_udp_listen(args, env, acl)
    candidates = listen_candidates(args, socket.SOCK_STREAM)
    if command is not None:
        check_exec_safety(candidates[0][1][0], acl)
    listener = open_listener(candidates, socket.SOCK_STREAM)
    with listener:
        env.info(f"listening on {format_hostport(*listener.getsockname()[:2])}")
        if args.keep_open or args.echo or command is not None:
            mode = "exec" if command is not None else "echo" if args.echo else "relay"
            config = ServerConfig(mode=mode, acl=acl, keep_open=args.keep_open, command=command,
                                  max_clients=args.max_clients, idle=args.idle_timeout,
                                  max_frame=args.max_frame if args.frame else None)
            return serve(listener, env, config)
        conn, peer = accept_one(listener, env, acl)
    with conn:  # the listener is closed: like nc -l, one client, then the port is free again
        env.info(f"connection from {peer}")
        stats = relay(conn, env, peer, stream_options(args, env))
    env.info(f"closed, {stats.summary()}")
    return ExitStatus.OK


def stream_options(args, env) -> StreamOptions:
    return StreamOptions(shutdown=not args.no_shutdown, idle=args.idle_timeout,
                         max_frame=args.max_frame if args.frame else None, exit_on_peer_eof=env.stdin_isatty)


def _check_common(args) -> None:
    if args.raw and not args.udp:
        raise UsageError("--raw applies to UDP only (-u)")
    if args.frame and args.udp:
        raise UsageError("--frame is a TCP message mode; UDP datagrams are messages already")


def _check_listen(args) -> None:
    if args.exec_cmd and args.sh_exec:
        raise UsageError("--exec and --sh-exec exclude each other")
    runs_command = bool(args.exec_cmd or args.sh_exec)
    if runs_command and args.echo:
        raise UsageError("--echo and --exec/--sh-exec exclude each other")
    if runs_command and (args.udp or args.frame):
        raise UsageError("--exec/--sh-exec needs a plain TCP connection (no -u, no --frame)")
    if args.frame and args.echo:
        raise UsageError("--frame does not apply to --echo (the echo is byte-exact, frames included)")
    if args.max_clients is not None and not args.keep_open:
        raise UsageError("--max-clients needs -k (without -k, listen serves one client)")


# --- names and addresses ------------------------------------------------------------------------

def resolve(host: str, port: int, family: int | None, socktype: int, passive: bool = False) -> list[tuple]:
    """getaddrinfo() as (family, sockaddr) pairs in the resolver's order, without duplicates.
    A failure is one line: `resolve HOST: name or service not known (EAI_NONAME)`."""
    name = host[1:-1] if host.startswith("[") and host.endswith("]") else host
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


def source_addresses(args, socktype: int) -> dict[int, tuple]:
    """-s/-p: the local address to bind per family (empty: let the OS choose)."""
    if not args.source and not args.source_port:
        return {}
    port = args.source_port or 0
    if not args.source:
        return {socket.AF_INET: ("0.0.0.0", port), socket.AF_INET6: ("::", port)}
    out: dict[int, tuple] = {}
    for af, sockaddr in resolve(args.source, port, args.family, socktype, passive=True):
        out.setdefault(af, sockaddr)
    return out


def bind_source(sock: socket.socket, sockaddr, reuse: bool) -> None:
    """Bind a client socket to its -s/-p address; EACCES (privileged port) -> exit 4."""
    try:
        if reuse:  # a repeated `-p PORT` must not be blocked by the last run's TIME_WAIT
            platform.set_server_reuse(sock)
        sock.bind(sockaddr)
    except OSError as exc:
        raise from_oserror(f"bind {format_hostport(*sockaddr[:2])}", exc) from None


def connect_tcp(args, env) -> tuple[socket.socket, str]:
    """Connect to each resolved address in turn; the first that answers wins. When all fail,
    the last failure is the message (-v shows each one)."""
    targets = resolve(args.host, args.port, args.family, socket.SOCK_STREAM)
    sources = source_addresses(args, socket.SOCK_STREAM)
    failure: SockdiagError | None = None
    for af, sockaddr in targets:
        peer = format_peer(sockaddr)
        if sources and af not in sources:
            env.info(f"connect {peer}: skipped, no source address in its family")
            continue
        sock = socket.socket(af, socket.SOCK_STREAM)
        try:
            if sources:
                bind_source(sock, sources[af], reuse=bool(args.source_port))
            sock.settimeout(args.timeout)
            sock.connect(sockaddr)
        except OSError as exc:
            sock.close()
            failure = from_oserror(f"connect {peer}", exc)
            if len(targets) > 1:
                env.info(failure.message)
            continue
        except BaseException:
            sock.close()
            raise
        env.info(f"connected to {peer} from {format_peer(sock.getsockname())}")
        return sock, peer
    if failure is None:
        raise SockdiagError(f"connect {args.host}: no address in the family of source {args.source}")
    raise failure


def listen_candidates(args, socktype: int) -> list[tuple]:
    """(family, sockaddr, v6only) to try in order. Default: dual-stack :: (one socket for IPv4
    and IPv6), falling back to 0.0.0.0 where the OS has no IPv6 or no dual stack."""
    port = args.port
    if args.bind:
        af, sockaddr = resolve(args.bind, port, args.family, socktype, passive=True)[0]
        return [(af, sockaddr, args.family == 6)]
    if args.family == 4:
        return [(socket.AF_INET, ("0.0.0.0", port), False)]
    if args.family == 6:
        return [(socket.AF_INET6, ("::", port), True)]
    if platform.dualstack_supported():
        return [(socket.AF_INET6, ("::", port), False), (socket.AF_INET, ("0.0.0.0", port), False)]
    return [(socket.AF_INET, ("0.0.0.0", port), False)]


def open_listener(candidates: list[tuple], socktype: int) -> socket.socket:
    """A bound socket (listening, for TCP) on the first candidate the OS accepts. Address in use
    or permission denied is reported at once; a missing IPv6 stack moves on to the next."""
    for index, (af, sockaddr, v6only) in enumerate(candidates):
        sock = None
        try:
            sock = socket.socket(af, socktype)
            if socktype == socket.SOCK_STREAM:
                # Not for UDP: on Linux SO_REUSEADDR would let two UDP servers share the port.
                platform.set_server_reuse(sock)
            if af == socket.AF_INET6:
                platform.set_v6only(sock, v6only)
            sock.bind(sockaddr)
            if socktype == socket.SOCK_STREAM:
                sock.listen(socket.SOMAXCONN)  # a burst of clients must not overflow the queue
            return sock
        except OSError as exc:
            if sock is not None:
                sock.close()
            name = platform.errno_name(exc.errno) if exc.errno is not None else ""
            if index + 1 < len(candidates) and name in ("EAFNOSUPPORT", "EADDRNOTAVAIL"):
                continue
            raise from_oserror(f"listen {format_hostport(*sockaddr[:2])}", exc) from None
        except BaseException:
            if sock is not None:
                sock.close()
            raise
    raise SockdiagError("listen: no address to bind")
