"""``multipath`` and ``multipathd`` commands served by dmpath, for the software that drives
multipath-tools by its command line (OpenStack os-brick, Kubernetes CSI plugins, Ansible)
and reads its text back.

Modules: ``fields`` (the ``%`` wildcards of maps, paths and path groups and the format
engine), ``views`` (whole outputs: topology, tables, status, JSON), ``args`` (the command
lines of both tools), and the thin I/O entry points ``multipath`` and ``multipathd``.
multipath-tools 0.9.4 (Debian 12) is the reference for every text, answer and exit status.
"""
