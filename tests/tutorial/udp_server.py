"""The UDP request/response server of the socket tutorials: recvfrom() a datagram, sendto() the
same bytes upper-cased back to its sender.

    python tests/tutorial/udp_server.py PORT [HOST [DATAGRAMS]]

PORT 0 picks a free port; the first line on stdout says which. Answers DATAGRAMS datagrams
(default 1) and exits; waits at most 30 s for each.
"""

import socket
import sys


def main(argv):
    port = int(argv[0])
    host = argv[1] if len(argv) > 1 else "127.0.0.1"
    datagrams = int(argv[2]) if len(argv) > 2 else 1
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        sock.settimeout(30)
        sock.bind((host, port))
        print("serving on", host, "port", sock.getsockname()[1], flush=True)
        for _ in range(datagrams):
            data, addr = sock.recvfrom(65535)
            sock.sendto(data.upper(), addr)


if __name__ == "__main__":
    main(sys.argv[1:])
