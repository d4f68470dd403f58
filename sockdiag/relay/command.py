"""connect and listen: the netcat core. Name resolution, connecting, listening, and dispatch to
the TCP relay (relay.stream), the servers for -k/--echo/--exec (relay.servers) and UDP (relay.udp)."""

from __future__ import annotations

import socket

from sockdiag.core.errors import UsageError
from sockdiag.core.portspec import format_hostport
from sockdiag.relay.stream import StreamOptions, relay
from sockdiag.relay.access import AccessList, check_exec_safety, exec_command
from sockdiag.relay.endpoints import connect_tcp, listen_candidates, open_listener
from sockdiag.relay.servers import ServerConfig, accept_one, serve
from sockdiag.core.status import ExitStatus

# --- entry points -------------------------------------------------------------------------------

def run_connect(args, env) -> int:
    """`sockdiag connect HOST PORT`: relay stdin/stdout through one connection."""
    _check_common(args)
    if args.udp:
        from sockdiag.relay.udp import run_udp_connect

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
    acl = AccessList.parse(args.allow, args.deny, args.allowfile, args.denyfile)
    command = exec_command(args)
    if args.udp:
        from sockdiag.relay.udp import run_udp_listen

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
                                  max_frame=args.max_frame if args.frame else None, max_backlog=args.max_backlog)
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


