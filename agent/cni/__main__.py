"""`mesh-cni` / `python -m agent.cni`: the executable a container runtime runs as a plugin.

The runtime finds it by the configuration's `type` in CNI_PATH, so it is installed as
`mesh-cni` there. It reads the whole of stdin, prints the result (or the error object) on
stdout and exits 0 on success, 1 on error; diagnostics go to stderr, which runtimes log.
"""

from __future__ import annotations

import os
import sys

from agent.cni.plugin import CniError, error_json, run


def main() -> int:
    stdin = sys.stdin.read()
    try:
        output = run(os.environ, stdin)
    except CniError as error:
        print(error_json(error))
        print(f"mesh-cni: {error.msg} {error.details}".rstrip(), file=sys.stderr)
        return 1
    if output:
        print(output)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
