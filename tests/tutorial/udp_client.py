"""The UDP request/response client of the socket tutorials: sendto() each line typed (without its
newline), recvfrom() the answer, print it.

    python tests/tutorial/udp_client.py PORT [HOST]

Ends at EOF of stdin; waits at most 5 s for an answer (UDP may lose it).
"""

import socket
import sys


def main(argv):
    port = int(argv[0])
    host = argv[1] if len(argv) > 1 else "127.0.0.1"
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        sock.settimeout(5)
        while True:
            try:
                msg = input()
            except EOFError:
                break
            sock.sendto(msg.encode(), (host, port))
            data, addr = sock.recvfrom(65535)
            print(data.decode())


if __name__ == "__main__":
    main(sys.argv[1:])
