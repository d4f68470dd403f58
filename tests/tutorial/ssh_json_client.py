"""The client for the fixed-size-header command server of the socket tutorials: send each
command typed, recv(4) the header length (struct "i"), read the JSON header, then read
total_size bytes of output in a recv loop.

    python tests/tutorial/ssh_json_client.py PORT [HOST]

Writes each output to stdout as it came (bytes); ends at EOF of stdin.
"""

import json
import socket
import struct
import sys


def recv_exactly(sock, size):
    data = b""
    while len(data) < size:
        chunk = sock.recv(min(1024, size - len(data)))
        if not chunk:
            sys.exit("server closed the connection")
        data += chunk
    return data


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
            sock.send(cmd.encode("utf-8"))
            header_size = struct.unpack("i", recv_exactly(sock, 4))[0]
            header = json.loads(recv_exactly(sock, header_size).decode("utf-8"))
            data = recv_exactly(sock, header["total_size"])
            sys.stdout.buffer.write(data)
            sys.stdout.flush()


if __name__ == "__main__":
    main(sys.argv[1:])
