"""The options of `sockdiag listen` and `sockdiag connect` (argparse; no side effects)."""

from __future__ import annotations

import argparse

from sockdiag.cmdline import (access_options, ack_bytes, bytes_size, common, family, frame_header, host, int_range,
                              port, port_or_zero, proxy_options, seconds, seconds_or_zero)

def _stream_options(parser: argparse.ArgumentParser) -> None:
    """Options shared by connect and listen."""
    family(parser)
    parser.add_argument("-t", "--tcp", action="store_true", help="TCP (the default; as in nc and ss)")
    parser.add_argument("-u", "--udp", action="store_true",
                        help="UDP instead of TCP (with -U: a unix datagram socket)")
    parser.add_argument("-U", "--unix", metavar="PATH",
                        help="a unix domain socket instead of HOST PORT: a path, or @name for an abstract name "
                             "(Linux); stream by default, datagram with -u")
    parser.add_argument("-q", "--quit-after", type=seconds_or_zero, metavar="SEC",
                        help="quit SEC seconds after stdin EOF, whatever the peer still sends (as nc -q)")
    parser.add_argument("-N", dest="nc_shutdown", action="store_true",
                        help="accepted for nc: the write side is already shut down after stdin EOF")
    parser.add_argument("-d", "--no-stdin", action="store_true",
                        help="do not read stdin (as nc -d); the write side then stays open")
    parser.add_argument("-n", "--numeric", action="store_true",
                        help="numeric addresses only: a host name is a usage error (no DNS, as nc -n)")
    parser.add_argument("-i", "--idle-timeout", type=seconds, metavar="SEC",
                        help="end a connection that moved no data for SEC seconds")
    parser.add_argument("--no-shutdown", action="store_true",
                        help="keep the write side open after stdin EOF (no half-close)")
    parser.add_argument("--frame", action="store_true",
                        help="message mode: each stdin line is sent as one frame with a 4-byte big-endian "
                             "length prefix; each received frame is printed as one line")
    parser.add_argument("--max-frame", type=bytes_size, default=16 * 1024 * 1024, metavar="BYTES",
                        help="largest frame accepted in --frame mode (default 16M)")
    parser.add_argument("--frame-header", type=frame_header, metavar="FMT",
                        help="the length header as a Python struct format with one integer code and an optional "
                             "byte-order prefix: !I (default: 4 bytes big-endian), i (struct.pack('i', n): native, "
                             "signed), <H, >Q; implies --frame")
    parser.add_argument("--frame-mode", choices=("length", "json", "ascii-ack"),
                        help="length: a length header per message (default); json: a length header, a JSON object "
                             "with total_size, then the body; ascii-ack: the length in decimal, an acknowledgement "
                             "(--ack), then the body; implies --frame")
    parser.add_argument("--frame-dir", choices=("both", "in", "out"),
                        help="which way messages are framed: both (default), in (frames arrive, stdin goes raw), "
                             "out (stdin goes as frames, what arrives is printed raw); implies --frame")
    parser.add_argument("--ack", type=ack_bytes, metavar="BYTES",
                        help="--frame-mode ascii-ack: the acknowledgement bytes (default ok)")
    parser.add_argument("--raw", action="store_true",
                        help="UDP: send each read chunk of stdin as one datagram, as read (default: connect -u sends "
                             "each line without its terminator, listen -u each line as it is)")


def _alpn(text: str) -> list[str]:
    from sockdiag.core.tlsinfo import parse_alpn

    try:
        return parse_alpn(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _tls_options(parser: argparse.ArgumentParser, side: str) -> None:
    """--tls and its settings; each of them implies --tls (as --frame-header implies --frame)."""
    group = parser.add_argument_group("TLS (any of these implies --tls)")
    if side == "connect":
        group.add_argument("--tls", "--ssl", action="store_true",
                           help="speak TLS to the server; its certificate is verified against the system CAs "
                                "and HOST")
        group.add_argument("--ca", metavar="FILE", help="trust the CA certificates in FILE (PEM) instead of the system's")
        group.add_argument("--insecure", action="store_true",
                           help="verify nothing: any certificate, any name (see it with -v)")
        group.add_argument("--sni", metavar="NAME",
                           help="the server name to send and verify (default: HOST; none for an address)")
        group.add_argument("--cert", metavar="FILE", help="client certificate (PEM; the key too, or give --key)")
    else:
        group.add_argument("--tls", "--ssl", action="store_true",
                           help="speak TLS to each client; without --cert a throwaway self-signed certificate is "
                                "made (needs sockdiag[tls]); -v prints its SHA-256 fingerprint")
        group.add_argument("--ca", metavar="FILE",
                           help="require a client certificate signed by a CA in FILE (PEM)")
        group.add_argument("--cert", metavar="FILE", help="server certificate (PEM; the key too, or give --key)")
    group.add_argument("--key", metavar="FILE", help="the private key of --cert (PEM, unencrypted)")
    group.add_argument("--alpn", type=_alpn, metavar="LIST",
                       help="ALPN protocols to offer (connect) or accept (listen), comma-separated: h2,http/1.1")


def add_listen(sub) -> None:
    p = sub.add_parser("listen", help="listen on PORT and relay stdin/stdout (like nc -l)",
                       description="Listen on PORT and relay between the connection and stdin/stdout, "
                                   "like 'nc -l'. Without -k, serve one connection and exit when it ends.")
    p.add_argument("where", nargs="*", metavar="[ADDR] PORT",
                   help="port to listen on (0: any free port), optionally after the address to bind "
                        "(nc -l ADDR PORT); or give the port with -p")
    p.add_argument("-p", "--port", dest="port_option", type=port_or_zero, metavar="PORT",
                   help="port to listen on, as traditional nc -l -p PORT")
    p.add_argument("-l", dest="nc_listen", action="store_true", help="accepted for nc: listen always listens")
    p.add_argument("-b", "-s", "--bind", type=host, metavar="ADDR",
                   help="address to bind (default: all interfaces, dual-stack)")
    p.add_argument("-w", "--timeout", type=seconds, metavar="SEC",
                   help="wait at most SEC for the first client (exit 3 when it expires)")
    p.add_argument("-k", "--keep-open", action="store_true", help="serve many clients, concurrently")
    p.add_argument("--max-clients", type=int_range(1, 1_000_000), metavar="N", help="with -k: at most N clients at once")
    p.add_argument("--max-backlog", type=bytes_size, default=4 * 1024 * 1024, metavar="BYTES",
                   help="with -k: bytes of stdin owed to one client before stdin waits for it (default 4M); a "
                        "client that reads nothing for 5 s while over it is dropped")
    p.add_argument("--echo", action="store_true", help="echo server: send each client back what it sent")
    p.add_argument("--exec", dest="exec_cmd", metavar="CMD",
                   help="run CMD (no shell) per connection with the socket as its stdin/stdout")
    p.add_argument("--sh-exec", dest="sh_exec", metavar="CMD", help="like --exec, through /bin/sh -c")
    p.add_argument("--exec-each", dest="exec_each", metavar="CMD",
                   help="run CMD (no shell) once per received message, the message on its stdin; its output is "
                        "one reply message, framed as the --frame options say (loopback only unless --allow)")
    p.add_argument("--exec-stderr", action=argparse.BooleanOptionalAction, default=True,
                   help="--exec-each: include CMD's stderr in the reply (default on)")
    p.add_argument("-o", "--output", choices=("text", "json"), default="text",
                   help="-u: print each datagram as text (default; a newline added where it lacks one) or as "
                        "one JSON object (from, port, size, data or data_b64)")
    access_options(p, allow_note="; also permits --exec on a non-loopback address")
    _stream_options(p)
    _tls_options(p, "listen")
    common(p)


def add_connect(sub) -> None:
    p = sub.add_parser("connect", help="connect to HOST PORT and relay stdin/stdout (like nc HOST PORT)",
                       description="Connect to HOST PORT and relay between the connection and stdin/stdout, "
                                   "like 'nc HOST PORT'. On stdin EOF the write side is shut down and the reply "
                                   "is still printed.")
    p.add_argument("host", nargs="?", type=host, metavar="HOST", help="host name, IPv4 or IPv6 address (not with -U)")
    p.add_argument("port", nargs="?", type=port, metavar="PORT", help="port number or service name (not with -U)")
    p.add_argument("-w", "--timeout", type=seconds, metavar="SEC", help="connect timeout (exit 3 when it expires)")
    p.add_argument("-z", "--zero-io", action="store_true",
                   help="connect and report, send nothing: exit 0 when the port accepts, 1 when not (nc -z); "
                        "with -u: send one empty datagram, exit 1 only on an ICMP refusal within --wait")
    p.add_argument("-s", "--source", type=host, metavar="ADDR", help="local address to connect from")
    p.add_argument("-p", "--source-port", type=port, metavar="PORT", help="local port to connect from")
    p.add_argument("--wait", type=seconds, default=1.0, metavar="SEC",
                   help="UDP: how long to wait for replies after stdin EOF (default 1)")
    p.add_argument("--reply-wait", type=seconds, metavar="SEC",
                   help="UDP: send one datagram, wait up to SEC for its reply, then send the next "
                        "(a request/response loop)")
    proxy_options(p)
    _stream_options(p)
    _tls_options(p, "connect")
    common(p)
