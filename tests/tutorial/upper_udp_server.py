"""socketserver.ThreadingUDPServer as the Python docs teach it: each datagram is answered with
the same bytes upper-cased, to the address it came from.

    python tests/tutorial/upper_udp_server.py PORT [HOST [DATAGRAMS]]

PORT 0 picks a free port; the first line on stdout says which. Answers DATAGRAMS datagrams
(default 1) and exits; waits at most 30 s for each.
"""

import socket
import socketserver
import sys
import threading


class UpperHandler(socketserver.BaseRequestHandler):
    def handle(self):
        data, sock = self.request
        sock.sendto(data.upper(), self.client_address)


class Server(socketserver.ThreadingUDPServer):
    pass


def main(argv):
    port = int(argv[0])
    host = argv[1] if len(argv) > 1 else "127.0.0.1"
    datagrams = int(argv[2]) if len(argv) > 2 else 1
    Server.address_family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with Server((host, port), UpperHandler) as server:
        server.timeout = 30
        print("serving on", host, "port", server.server_address[1], flush=True)
        for _ in range(datagrams):
            server.handle_request()
        # The answers are sent by the handler threads through the server's socket, and
        # server_close() closes it before it joins them: wait for them first.
        for thread in threading.enumerate():
            if thread is not threading.current_thread():
                thread.join()


if __name__ == "__main__":
    main(sys.argv[1:])
