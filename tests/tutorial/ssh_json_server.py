"""The command server of the socket tutorials with a fixed-size header (the sticky-packet
lesson, final form): recv(8096) one command, run it with the shell, then send
struct.pack("i", len(header)), the header (JSON with total_size), and the output.

    python tests/tutorial/ssh_json_server.py PORT [HOST [CLIENTS [EMPTY_READS]]]

Loopback only: it runs whatever it is sent. PORT 0 picks a free port; the first line on stdout
says which. Serves CLIENTS clients (default 1) one after the other, then exits.

After a client's EOF, recv() returns b"" at once, again and again. The tutorials' fixed server
ends the session at the first one ("if not cmd: break"), the default here; without that line it
loops forever, answering the empty command with an empty output (a header with total_size 0)
each time. EMPTY_READS > 1 does that for that many empty reads (bounded, so the process ends),
or until a send fails because the client has gone. A peer left waiting gives up after 30 s.
"""

import hashlib
import json
import socket
import struct
import subprocess
import sys


def serve(conn, empty_reads):
    while True:
        try:
            cmd = conn.recv(8096)
        except OSError:  # the client reset the connection
            return
        if not cmd:
            empty_reads -= 1
            if empty_reads <= 0:
                return
        res = subprocess.run(cmd.decode(), shell=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        header = {"filename": "a.txt", "md5": hashlib.md5(res.stdout + res.stderr).hexdigest(),
                  "total_size": len(res.stdout) + len(res.stderr)}
        header_bytes = json.dumps(header).encode("utf-8")
        try:
            conn.send(struct.pack("i", len(header_bytes)))
            conn.send(header_bytes)
            conn.sendall(res.stdout)
            conn.sendall(res.stderr)
        except OSError:  # the tutorial dies here with BrokenPipeError once the client is gone
            return


def main(argv):
    port = int(argv[0])
    host = argv[1] if len(argv) > 1 else "127.0.0.1"
    clients = int(argv[2]) if len(argv) > 2 else 1
    empty_reads = int(argv[3]) if len(argv) > 3 else 1
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
                serve(conn, empty_reads)


if __name__ == "__main__":
    main(sys.argv[1:])
