"""socketserver.ThreadingTCPServer as the Python docs teach it: a StreamRequestHandler that
upper-cases each line the client sends, one thread per client.

    python tests/tutorial/upper_tcp_server.py PORT [HOST [CLIENTS]]

PORT 0 picks a free port; the first line on stdout says which. Handles CLIENTS connections
(default 1), waits for their threads, and exits; waits at most 30 s for each.
"""

import socket
import socketserver
import sys


class UpperHandler(socketserver.StreamRequestHandler):
    def handle(self):
        for line in self.rfile:  # until the client shuts down its side
            self.wfile.write(line.upper())


class Server(socketserver.ThreadingTCPServer):
    allow_reuse_address = True


def main(argv):
    port = int(argv[0])
    host = argv[1] if len(argv) > 1 else "127.0.0.1"
    clients = int(argv[2]) if len(argv) > 2 else 1
    Server.address_family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with Server((host, port), UpperHandler) as server:
        server.timeout = 30  # handle_request() gives up after this long without a client
        print("serving on", host, "port", server.server_address[1], flush=True)
        for _ in range(clients):
            server.handle_request()
    # leaving the with block: server_close() joins the handler threads


if __name__ == "__main__":
    main(sys.argv[1:])
