"""wait: block until targets are ready (a port accepts, a unix socket answers, a port is free)."""
