"""Where did a connection land? A TCP probe for the capture tests, stdlib only.

Run as a script, by path, inside the test's namespaces:

    python capture_probe.py listen PORT...     # on 0.0.0.0; answers every connection with
                                               # "<port it was accepted on> <original dst>"
    python capture_probe.py connect HOST PORT  # prints the answer

A connection that iptables redirected is accepted on the redirect port (15001 or 15006) and
its original destination (SO_ORIGINAL_DST, from conntrack) is where it was headed; one that
was not is accepted on the port it was headed for.
"""

from __future__ import annotations

import socket
import sys
import threading

SO_ORIGINAL_DST = 80  # linux/netfilter_ipv4.h


def original_destination(connection: socket.socket) -> str:
    """Where the connection was headed: conntrack's record where there is one (a namespace
    with a nat table), else the address it reached."""
    try:
        raw = connection.getsockopt(socket.SOL_IP, SO_ORIGINAL_DST, 16)
    except OSError:
        host, port = connection.getsockname()
        return f"{host}:{port}"
    return f"{socket.inet_ntoa(raw[4:8])}:{int.from_bytes(raw[2:4], 'big')}"


def serve(port: int) -> None:
    server = socket.create_server(("0.0.0.0", port))
    while True:
        connection, _ = server.accept()
        with connection:
            connection.sendall(f"{port} {original_destination(connection)}\n".encode())


def main(argv: list[str]) -> int:
    command, *rest = argv
    if command == "listen":
        threads = [threading.Thread(target=serve, args=(int(port),)) for port in rest]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        return 0
    host, port = rest
    with socket.create_connection((host, int(port)), timeout=5) as connection:
        print(connection.makefile().readline().strip())
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
