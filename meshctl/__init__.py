"""meshctl: the mesh's command-line tool, in the spirit of istioctl.

Each subcommand lives in its own module that registers its parser and returns an exit code;
`meshctl.__main__` only assembles them. Subcommands talk to running services through their
public APIs (galley's xDS distribution), never through their internals.
"""
