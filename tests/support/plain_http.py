"""An application that knows nothing of a mesh: a plain HTTP server and client, stdlib only.

The capture tests run it inside pod namespaces as an ordinary user with an empty
environment (no proxy settings), so whatever a sidecar does to its traffic is capture's
doing. It is run as a script, by path:

    python plain_http.py serve PORT   # every request answered with a JSON echo of it
    python plain_http.py get URL      # prints {"status": ..., "body": ...}; exit 0
"""

from __future__ import annotations

import json
import sys
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Echo(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = json.dumps({"path": self.path, "headers": dict(self.headers.items())}).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def get(url: str) -> dict[str, object]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return {"status": response.status, "body": response.read().decode()}
    except urllib.error.HTTPError as error:
        return {"status": error.code, "body": error.read().decode()}


def main(argv: list[str]) -> int:
    command, target = argv
    if command == "serve":
        ThreadingHTTPServer(("0.0.0.0", int(target)), Echo).serve_forever()
    print(json.dumps(get(target)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
