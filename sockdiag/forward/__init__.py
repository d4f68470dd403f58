"""forward: a TCP/UDP port forwarder (socat TCP-LISTEN:LPORT,fork TCP:HOST:PORT), one event loop."""
