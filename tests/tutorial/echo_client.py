"""The blocking echo client of the socket tutorials: send each line typed (input(), so without
its newline), read the echo back, print it.

    python tests/tutorial/echo_client.py PORT [HOST]

Reads until it has as many bytes as it sent (an echo may arrive in pieces); ends at EOF of stdin.
"""

import socket
import sys


def main(argv):
    port = int(argv[0])
    host = argv[1] if len(argv) > 1 else "127.0.0.1"
    socket.setdefaulttimeout(30)
    with socket.create_connection((host, port)) as sock:
        while True:
            try:
                msg = input().encode()
            except EOFError:
                break
            if not msg:  # an empty send would leave recv() waiting for an echo that never comes
                continue
            sock.sendall(msg)
            data = b""
            while len(data) < len(msg):
                chunk = sock.recv(1024)
                if not chunk:
                    sys.exit("server closed the connection")
                data += chunk
            print(data.decode())


if __name__ == "__main__":
    main(sys.argv[1:])
