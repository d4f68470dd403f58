"""What probe scans: the targets (HOST, -iL FILE or stdin), minus --exclude/--excludefile, each
address once; and the ports (PORTS, --top-ports N, minus --exclude-ports).

Positionals: `probe HOST PORTS [PORTS...]`; with -iL every positional is PORTS (argparse puts
the first in `host`), and with --top-ports PORTS may be absent. Blocks and ranges stay
(first, last) spans (core.spans): nothing here lists a block's addresses.
"""

from __future__ import annotations

import ipaddress
import socket

from sockdiag import platform
from sockdiag.core.errors import SockdiagError, UsageError
from sockdiag.core.portspec import PortSpecError, parse_ports
from sockdiag.core.spans import AddressRange, Span, assign, span_of
from sockdiag.core.status import ExitStatus
from sockdiag.core.targets import (
    TargetError,
    TargetSpec,
    parse_targets,
    split_target_text,
)
from sockdiag.probe.jobs import Host
from sockdiag.probe.topports import select_ports

# --- positionals and ports ----------------------------------------------------------------------

def split_positionals(args) -> tuple[str | None, list[str]]:
    """(HOST text or None with -iL, the PORTS words)."""
    given = ([args.host] if args.host is not None else []) + list(args.ports or [])
    if getattr(args, "input_file", None) is not None:
        return None, given
    if not given:
        raise UsageError("the following arguments are required: HOST, PORTS")
    host, ports = given[0], given[1:]
    if not ports and not getattr(args, "top_ports", None):
        raise UsageError("the following arguments are required: PORTS")
    return host, ports


def choose_ports(args, words: list[str], proto: str) -> list[int]:
    """PORTS, or the --top-ports N most common (of PORTS, when both are given: as nmap -p with
    --top-ports), minus --exclude-ports; sorted."""
    def lookup(name: str) -> int | None:
        return platform.service_port(name, proto)

    ports = None
    if words:
        spec = "-" if "-" in words else ",".join(words)  # probe HOST 80 443 = probe HOST 80,443
        try:
            ports = parse_ports(spec, lookup)
        except PortSpecError:
            if getattr(args, "input_file", None) is not None and _is_target(words[0]):
                raise UsageError(f"with -iL every positional is PORTS, and {words[0]!r} is a target: "
                                 "list it in the file") from None
            raise
    top = getattr(args, "top_ports", None)
    if top:
        if ports is None:
            ports = select_ports(proto, top)
        else:
            ports = select_ports(proto, top, among=ports)
            if not ports:
                raise UsageError(f"none of the ports given is in the --top-ports list ({proto})")
    if ports is None:  # -iL without PORTS or --top-ports
        raise UsageError("the following arguments are required: PORTS (or --top-ports N)")
    exclude = getattr(args, "exclude_ports", None)
    if exclude:
        try:
            dropped = set(parse_ports(exclude, lookup))
        except PortSpecError as exc:
            raise UsageError(f"--exclude-ports: {exc.message}") from None
        ports = [port for port in ports if port not in dropped]
        if not ports:
            raise UsageError("--exclude-ports leaves no port to scan")
    return ports


def _is_target(word: str) -> bool:
    try:
        return any(spec.name is None for spec in parse_targets(word))
    except TargetError:
        return False


# --- target lists -------------------------------------------------------------------------------

def read_list(name: str, option: str, env) -> str:
    """The text of a target file, or of stdin for '-'. A file that cannot be read is a fatal
    error, as nmap treats it: one line, exit 1 (4 when permission is denied)."""
    if name == "-":
        data = env.stdin.read()
    else:
        try:
            with open(name, "rb") as f:
                data = f.read()
        except OSError as exc:
            raise platform.from_oserror(f"{option} {name}", exc) from None
    return data.decode("utf-8", "replace")


def target_specs(args, host_text: str | None, env) -> list[TargetSpec]:
    """HOST, or the targets of -iL FILE (one per line, or separated by blanks or commas)."""
    if host_text is not None:
        return parse_targets(host_text, args.family, args.force)
    name = args.input_file
    if name == "-" and getattr(args, "excludefile", None) == "-":
        raise UsageError("-iL - and --excludefile - cannot both read standard input")
    items = split_target_text(read_list(name, "-iL", env))
    if not items:
        raise SockdiagError(f"-iL {name}: no targets in it")
    try:
        return parse_targets(",".join(items), args.family, args.force)
    except TargetError as exc:
        raise TargetError(f"-iL {name}: {exc.message}") from None


def exclusions(args, env) -> list[Span]:
    """--exclude and --excludefile as spans. A name is excluded with every address it resolves
    to; one that does not resolve stops the scan (exit 1): better nothing than the wrong hosts."""
    items: list[str] = []
    if getattr(args, "exclude", None):
        items += [item for item in args.exclude.split(",")]
    if getattr(args, "excludefile", None):
        items += split_target_text(read_list(args.excludefile, "--excludefile", env))
    if not items:
        return []
    try:
        specs = parse_targets(",".join(items), None, limit=False)
    except TargetError as exc:
        raise TargetError(f"--exclude: {exc.message}") from None
    spans: list[Span] = []
    for spec in specs:
        if spec.network is not None:
            spans.append(span_of(spec.network))
        elif spec.address is not None:
            spans.append(span_of(spec.address, _scope_id(spec, getattr(spec.address, "scope_id", None))))
        else:
            try:
                infos = socket.getaddrinfo(spec.name, None, socket.AF_UNSPEC, socket.SOCK_STREAM)
            except socket.gaierror as exc:
                raise SockdiagError(f"--exclude {spec.name}: {platform.describe_gaierror(exc)}") from None
            for fam, _, _, _, sockaddr in infos:
                if fam in (socket.AF_INET, socket.AF_INET6):
                    address = ipaddress.ip_address(sockaddr[0].partition("%")[0])
                    spans.append(span_of(address, sockaddr[3] if fam == socket.AF_INET6 else 0))
    return spans


# --- resolution and the host list ---------------------------------------------------------------

def resolve(specs: list[TargetSpec], family: int | None, env, exclude: list[Span] = ()) -> list[Host]:
    """TargetSpecs -> Hosts, each address once, in the order given, minus the exclusions.

    Names go through getaddrinfo; with neither -4 nor -6 a name's first IPv4 address is
    scanned (as nmap does), else its first IPv6 one. A name that does not resolve is skipped
    with a warning when other targets remain, else an error (exit 1). An address an earlier
    target already covers (a name inside a CIDR block, a target listed twice) is scanned once;
    -v says so.
    """
    resolved: list[tuple[TargetSpec, Host, Span]] = []
    failures = []
    for spec in specs:
        try:
            host = _resolve_one(spec, family, env)
        except socket.gaierror as exc:
            failures.append(f"{spec.text}: {platform.describe_gaierror(exc)}")
            continue
        resolved.append((spec, host, _span(host)))
    if failures and not resolved:
        raise SockdiagError(failures[0] if len(failures) == 1 else "no target resolved: " + "; ".join(failures))
    if failures:  # one line however many names failed: stderr stays readable in a pipeline
        env.warn("not scanned: " + "; ".join(failures))
    plan = assign([span for _, _, span in resolved], exclude)
    hosts: list[Host] = []
    for i, (spec, host, span) in enumerate(resolved):
        if plan.shared[i]:
            owner = resolved[plan.first_owner[i]][0].text if plan.first_owner[i] is not None else "another target"
            what = _describe(spec, host, plan.shared[i])
            env.info(f"{what} already in {owner}: scanned once")
        if plan.excluded[i]:
            env.info(f"{_describe(spec, host, plan.excluded[i])} excluded")
        hosts.extend(_pieces(host, span, plan.pieces[i]))
    if not hosts:
        raise SockdiagError("no target left to scan after the exclusions", ExitStatus.FAILURE)
    return hosts


def _describe(spec: TargetSpec, host: Host, count: int) -> str:
    if host.count == 1:
        return spec.text if spec.text == (host.label or host.address(0)) else f"{spec.text} ({host.label})"
    return f"{count} of the {host.count} addresses of {spec.text}"


def _span(host: Host) -> Span:
    if host.count > 1 or not isinstance(host.addresses, list):
        return span_of(host.addresses, host.scope_id)
    return span_of(ipaddress.ip_address(host.addresses[0]), host.scope_id)


def _pieces(host: Host, span: Span, pieces: list[tuple[int, int]]) -> list[Host]:
    """The parts of a host an assignment left to it: the host itself when whole, else ranges."""
    _, first, last = span
    if pieces == [(first, last)]:
        return [host]
    make = ipaddress.IPv4Address if host.family == socket.AF_INET else ipaddress.IPv6Address
    return [Host(host.family, AddressRange(make(a), make(b)), count=b - a + 1) for a, b in pieces]


def _resolve_one(spec: TargetSpec, family: int | None, env) -> Host:
    if spec.network is not None:
        net = spec.network
        return Host(socket.AF_INET if net.version == 4 else socket.AF_INET6, net, count=net.num_addresses)
    if spec.address is not None:
        address = spec.address
        if address.version == 4:
            return Host(socket.AF_INET, [str(address)])
        scope = _scope_id(spec, getattr(address, "scope_id", None))
        return Host(socket.AF_INET6, [str(address).partition("%")[0]], scope_id=scope, label=str(address))
    wanted = {4: socket.AF_INET, 6: socket.AF_INET6}.get(family, socket.AF_UNSPEC)
    infos = socket.getaddrinfo(spec.name, None, wanted, socket.SOCK_STREAM)
    addresses = [(fam, sockaddr) for fam, _, _, _, sockaddr in infos if fam in (socket.AF_INET, socket.AF_INET6)]
    if not addresses:
        raise socket.gaierror(getattr(socket, "EAI_NODATA", getattr(socket, "EAI_NONAME", -2)), "no address")
    v4 = [item for item in addresses if item[0] == socket.AF_INET]
    fam, sockaddr = v4[0] if (v4 and wanted == socket.AF_UNSPEC) else addresses[0]
    others = sorted({sa[0] for _, sa in addresses} - {sockaddr[0]})
    env.info(f"{spec.name} is {sockaddr[0]}" + (f" (not scanned: {', '.join(others)})" if others else ""))
    scope = sockaddr[3] if fam == socket.AF_INET6 else 0
    return Host(fam, [sockaddr[0].partition("%")[0]], scope_id=scope, label=sockaddr[0])


def _scope_id(spec: TargetSpec, scope: str | None) -> int:
    """An IPv6 zone ('fe80::1%eth0', '%2') as an interface index."""
    if not scope:
        return 0
    if scope.isascii() and scope.isdigit():
        return int(scope)
    try:
        return socket.if_nametoindex(scope)
    except (OSError, AttributeError):
        raise UsageError(f"bad address {spec.text!r}: no interface named {scope!r}") from None
