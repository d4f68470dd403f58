"""connect and listen: the netcat core. Name resolution, connecting, listening, and dispatch to
the TCP relay (relay.stream), the servers for -k/--echo/--exec (relay.servers) and UDP (relay.udp)."""

from __future__ import annotations

import socket

from sockdiag.core.errors import UsageError
from sockdiag.core.framing import DEFAULT_HEADER, FrameSpec
from sockdiag.core.portspec import format_hostport
from sockdiag.relay.stream import StreamOptions, relay
from sockdiag.relay.access import AccessList, check_exec_safety, command_argv, exec_command
from sockdiag.net.proxy import proxy_from_args
from sockdiag.relay.endpoints import connect_tcp, listen_candidates, open_listener
from sockdiag.relay.servers import ServerConfig, accept_one, serve
from sockdiag.relay import tlsrelay
from sockdiag.core.status import ExitStatus

# --- entry points -------------------------------------------------------------------------------

def run_connect(args, env) -> int:
    """`sockdiag connect HOST PORT`: relay stdin/stdout through one connection."""
    _check_common(args)
    _check_proxy(args)
    tlsrelay.check_options(args, "connect")
    if args.unix is not None:
        return _connect_unix(args, env)
    if args.host is None or args.port is None:
        raise UsageError("give HOST and PORT, or -U PATH for a unix socket")
    _check_numeric(args, args.host, args.source, args.proxy[0] if args.proxy else None)
    if args.zero_io:
        return _zero_io(args, env)
    if args.udp:
        from sockdiag.relay.udp import run_udp_connect

        if args.quit_after is not None:  # nc -u -q SEC: SEC after stdin EOF, which --wait already is
            args.wait = args.quit_after
        return run_udp_connect(args, env)
    sock, peer = connect_tcp(args, env)
    with sock, tlsrelay.client(sock, args, env, peer) as conn:
        return _relay_connection(conn, env, args, peer)


def _relay_connection(sock: socket.socket, env, args, peer: str) -> int:
    """One connection <-> stdin/stdout: the stream relay, or a dialogue for ascii-ack."""
    spec = frame_spec(args)
    # ascii-ack is a dialogue by nature; --frame-dir in is the tutorials' command client (a raw
    # request, then its framed reply): one request per reply, or a piped script's commands would
    # reach a recv()-per-command server merged into one.
    if spec is not None and (spec.is_dialogue or spec.direction == "in"):
        from sockdiag.relay.dialogue import Dialogue, converse, header_note

        dialogue = Dialogue(sock, spec, peer, args.idle_timeout, header_note(peer, env))
        converse(dialogue, env)
        env.info(f"closed, {dialogue.bytes_in} bytes in, {dialogue.bytes_out} bytes out")
        return ExitStatus.OK
    stats = relay(sock, env, peer, stream_options(args, env))
    env.info(f"closed, {stats.summary()}")
    return ExitStatus.OK


def run_listen(args, env) -> int:
    """`sockdiag listen PORT`: one relayed connection, or a server with -k / --echo / --exec."""
    _listen_where(args)
    _check_common(args)
    _check_listen(args)
    tlsrelay.check_options(args, "listen")
    _check_numeric(args, args.bind)
    acl = AccessList.parse(args.allow, args.deny, args.allowfile, args.denyfile)
    command = exec_command(args)
    args.tls_context = tlsrelay.server_context(args, env)
    if args.unix is not None:
        return _listen_unix(args, env, acl, command)
    if args.udp:
        from sockdiag.relay.udp import run_udp_listen

        return run_udp_listen(args, env, acl)
    candidates = listen_candidates(args, socket.SOCK_STREAM)
    if command is not None or args.exec_each is not None:
        check_exec_safety(candidates[0][1][0], acl)
    listener = open_listener(candidates, socket.SOCK_STREAM)
    with listener:
        env.info(f"listening on {format_hostport(*listener.getsockname()[:2])}")
        return _serve(listener, env, args, acl, command)


def _serve(listener: socket.socket, env, args, acl, command) -> int:
    """A listening stream socket (TCP or unix): a dialogue server, a -k/--echo/--exec server, or
    one relayed client (the listener is closed as soon as it has come, like nc -l)."""
    spec = frame_spec(args)
    if args.exec_each is not None or (spec is not None and spec.is_dialogue):
        from sockdiag.relay.dialogue import EachCommand, serve_dialogues

        each = EachCommand(command_argv("--exec-each", args.exec_each), args.exec_stderr) if args.exec_each is not None else None
        return serve_dialogues(listener, env, spec or FrameSpec(direction="none", max_frame=args.max_frame), acl,
                               keep_open=args.keep_open, max_clients=args.max_clients,
                               idle=args.idle_timeout, command=each, accept_timeout=args.timeout,
                               tls=tlsrelay.server_tls(args, env))
    if args.keep_open or args.echo or command is not None:
        mode = "exec" if command is not None else "echo" if args.echo else "relay"
        config = ServerConfig(mode=mode, acl=acl, keep_open=args.keep_open, command=command,
                              max_clients=args.max_clients, idle=args.idle_timeout,
                              frames=spec, max_backlog=args.max_backlog, accept_timeout=args.timeout,
                              tls=tlsrelay.server_tls(args, env))
        return serve(listener, env, config)
    conn, peer = accept_one(listener, env, acl, args.timeout)
    listener.close()
    with conn:
        env.info(f"connection from {peer}")
        with tlsrelay.server(conn, args, env, peer) as plain:
            stats = relay(plain, env, peer, stream_options(args, env))
    env.info(f"closed, {stats.summary()}")
    return ExitStatus.OK


def stream_options(args, env) -> StreamOptions:
    return StreamOptions(shutdown=not args.no_shutdown, idle=args.idle_timeout, frames=frame_spec(args),
                         exit_on_peer_eof=env.stdin_isatty, quit_after=args.quit_after,
                         read_stdin=not args.no_stdin)


def _listen_where(args) -> None:
    """nc's ways to say where to listen: PORT, ADDR PORT, -p PORT, -p PORT ADDR; sets args.port and
    args.bind. An address given twice (ADDR and -b/-s) is a usage error."""
    import argparse

    from sockdiag.cmdline import host, port_or_zero

    where = list(args.where)
    if args.unix is not None:
        if where or args.port_option is not None or args.bind is not None:
            raise UsageError("-U PATH replaces the address and port: listen -U PATH")
        args.port = None
        return
    if args.port_option is not None:
        if len(where) > 1:
            raise UsageError("with -p PORT, give at most an address to bind: listen [ADDR] -p PORT")
        args.port, address = args.port_option, (where[0] if where else None)
    elif len(where) == 1:
        address, port_text = None, where[0]
    elif len(where) == 2:
        address, port_text = where
    else:
        raise UsageError("give the port: listen [ADDR] PORT, or listen -p PORT")
    try:
        if args.port_option is None:
            args.port = port_or_zero(port_text)
        if address is not None:
            if args.bind is not None:
                raise UsageError(f"the address to bind is given twice: {address!r} and -b {args.bind!r}")
            args.bind = host(address)
    except argparse.ArgumentTypeError as exc:
        raise UsageError(f"argument [ADDR] PORT: {exc}") from None


def _connect_unix(args, env) -> int:
    """connect -U PATH: the same relays over a unix socket (stream, or datagram with -u)."""
    from sockdiag.relay.unix import ClientSocket

    if args.host is not None:
        raise UsageError("-U PATH replaces HOST and PORT: connect -U PATH")
    with ClientSocket(args.unix, args.udp) as client:
        peer = client.peer
        env.info(f"connected to {peer}")
        if args.zero_io:
            return ExitStatus.OK
        if args.udp:
            from sockdiag.relay.udp import run_connected

            return run_connected(client.sock, env, args, peer)
        with tlsrelay.client(client.sock, args, env, peer) as conn:
            return _relay_connection(conn, env, args, peer)


def _listen_unix(args, env, acl, command) -> int:
    """listen -U PATH: -k, --echo, --exec, --exec-each and --frame work as over TCP. A unix socket is
    reachable only through the filesystem, so --exec needs no --allow here."""
    from sockdiag.relay.unix import Listener

    kind = socket.SOCK_DGRAM if args.udp else socket.SOCK_STREAM
    with Listener(args.unix, args.udp) as listener:
        env.info(f"listening on {args.unix} (unix {'datagram' if kind == socket.SOCK_DGRAM else 'stream'})")
        if args.udp:
            from sockdiag.relay.udp import listen_loop

            listener.sock.setblocking(False)
            return listen_loop(listener.sock, env, args, acl)
        return _serve(listener.sock, env, args, acl, command)


def _check_numeric(args, *hosts) -> None:
    """-n: every host given must be an address literal (no name lookup at all)."""
    if not args.numeric:
        return
    from sockdiag.core.addrset import canonical_address

    for text in hosts:
        if text is not None and canonical_address(text.strip("[]")) is None:
            raise UsageError(f"-n: {text!r} is not a numeric address (no name lookups with -n)")


def _zero_io(args, env) -> int:
    """connect -z: connect and report, as nc -z. TCP: the handshake completes or not. UDP: one
    empty datagram; only an ICMP port unreachable within --wait counts as closed (silence is
    open|filtered, as nc -zu reports it)."""
    if not args.udp:
        sock, peer = connect_tcp(args, env)
        with sock:
            tlsrelay.handshake_only(sock, args, env, peer)
        env.info(f"{peer}: open")
        return ExitStatus.OK
    from sockdiag.net.resolve import resolve
    from sockdiag.platform.errnos import from_oserror
    from sockdiag.relay.access import format_peer

    af, sockaddr = resolve(args.host, args.port, args.family, socket.SOCK_DGRAM)[0]
    peer = format_peer(sockaddr)
    with socket.socket(af, socket.SOCK_DGRAM) as sock:
        try:
            sock.connect(sockaddr)
            sock.send(b"")
            sock.settimeout(args.wait)
            sock.recv(1)
        except TimeoutError:
            env.info(f"{peer} (udp): no answer within {args.wait:g} s: open|filtered")
            return ExitStatus.OK
        except OSError as exc:
            raise from_oserror(f"connect {peer} (udp)", exc) from None
    env.info(f"{peer} (udp): open")
    return ExitStatus.OK


def frame_spec(args) -> FrameSpec | None:
    """The --frame options as one FrameSpec, or None for a byte stream. --frame-header,
    --frame-mode, --frame-dir and --ack each imply --frame."""
    if not (args.frame or args.frame_header or args.frame_mode or args.frame_dir or args.ack):
        return None
    return FrameSpec(args.max_frame, args.frame_header or DEFAULT_HEADER, args.frame_mode or "length",
                     args.frame_dir or "both", args.ack or b"ok")


def _check_common(args) -> None:
    framed = frame_spec(args) is not None
    if args.tcp and args.udp:
        raise UsageError("-t (TCP) and -u (UDP) exclude each other")
    if args.raw and not args.udp:
        raise UsageError("--raw applies to UDP only (-u)")
    if framed and args.udp:
        raise UsageError("--frame is a TCP message mode; UDP datagrams are messages already")
    if args.ack and args.frame_mode != "ascii-ack":
        raise UsageError("--ack applies to --frame-mode ascii-ack only")
    if getattr(args, "reply_wait", None) is not None and not args.udp:
        raise UsageError("--reply-wait applies to UDP only (-u)")
    if getattr(args, "output", "text") != "text" and not args.udp:
        raise UsageError("-o json applies to listen -u only (one object per datagram)")


def _check_proxy(args) -> None:
    """-x reaches a TCP target through a proxy: not with -u or -U (the rest: net.proxy's rules)."""
    if proxy_from_args(args) is not None and (args.udp or args.unix is not None):
        raise UsageError("-x (proxy) carries a TCP connection: not with -u or -U")


def _check_listen(args) -> None:
    if args.exec_cmd and args.sh_exec:
        raise UsageError("--exec and --sh-exec exclude each other")
    runs_command = bool(args.exec_cmd or args.sh_exec)
    framed = frame_spec(args) is not None
    if runs_command and args.echo:
        raise UsageError("--echo and --exec/--sh-exec exclude each other")
    if runs_command and (args.udp or framed):
        raise UsageError("--exec/--sh-exec needs a plain TCP connection (no -u, no --frame)")
    if framed and args.echo:
        raise UsageError("--frame does not apply to --echo (the echo is byte-exact, frames included)")
    if args.exec_each is not None and (runs_command or args.echo or args.udp):
        raise UsageError("--exec-each excludes --exec, --sh-exec, --echo and -u")
    if args.frame_mode == "ascii-ack" and args.keep_open and args.exec_each is None:
        raise UsageError("--frame-mode ascii-ack with -k needs --exec-each (stdin cannot answer many clients)")
    if args.max_clients is not None and not args.keep_open:
        raise UsageError("--max-clients needs -k (without -k, listen serves one client)")


