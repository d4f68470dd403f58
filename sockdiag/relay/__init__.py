"""connect and listen: the netcat core (options, command entry, endpoints, the TCP, UDP and server engines).

Importing this package imports nothing else: `sockdiag --help` loads only relay.options."""
