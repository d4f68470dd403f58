"""Pure logic: values in, values out. No sockets, selectors, subprocesses, threads, psutil or
sys.std* here (import-linter checks it): port specs, targets, frame codecs, renderers, the socket
table view and bindcheck's verdicts, plus the exit statuses and error types everything shares."""
