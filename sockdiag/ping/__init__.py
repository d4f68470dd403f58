"""ping: TCP connect latency (or a UDP request/reply), ping-style."""
