"""states: the socket table command (options and command entry; the readers are in platform)."""
