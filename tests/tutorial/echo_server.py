"""The blocking echo server of the socket tutorials: accept a client, send back every recv(1024)
until the client closes, then the next client.

    python tests/tutorial/echo_server.py PORT [HOST [CLIENTS]]

PORT 0 picks a free port; the first line on stdout says which. Serves CLIENTS clients (default 1)
one after the other, then exits; a peer left waiting gives up after 30 s (no orphan processes).
"""

import socket
import sys


def main(argv):
    port = int(argv[0])
    host = argv[1] if len(argv) > 1 else "127.0.0.1"
    clients = int(argv[2]) if len(argv) > 2 else 1
    socket.setdefaulttimeout(30)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as server:
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.bind((host, port))
        server.listen(5)
        print("serving on", host, "port", server.getsockname()[1], flush=True)
        for _ in range(clients):
            conn, addr = server.accept()
            with conn:
                while True:
                    data = conn.recv(1024)
                    if not data:  # the client closed its side
                        break
                    conn.sendall(data)


if __name__ == "__main__":
    main(sys.argv[1:])
