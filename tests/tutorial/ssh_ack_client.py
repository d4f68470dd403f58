"""The "simple SSH" client of the socket tutorials: send each command typed, read the decimal
length of the output, acknowledge it with b"ok", then read exactly that many bytes.

    python tests/tutorial/ssh_ack_client.py PORT [HOST]

Writes each output to stdout as it came (bytes); ends at EOF of stdin.
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
                cmd = input().strip()
            except EOFError:
                break
            if not cmd:
                continue
            sock.send(cmd.encode())
            length = int(sock.recv(1024).decode())
            sock.send(b"ok")
            data = b""
            while len(data) < length:
                chunk = sock.recv(1024)
                if not chunk:
                    sys.exit("server closed the connection")
                data += chunk
            sys.stdout.buffer.write(data)
            sys.stdout.flush()


if __name__ == "__main__":
    main(sys.argv[1:])
