"""`python -m localmesh.demo_app`: the demo app as a process, as a capture pod runs it."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def test_serves_every_port_on_app_address_until_sigterm() -> None:
    ports = [free_port(), free_port()]
    env = {**os.environ, "APP_ADDRESS": "127.0.0.1"}
    argv = [sys.executable, "-m", "localmesh.demo_app", "hello-v1", *map(str, ports)]
    app = subprocess.Popen(argv, env=env)
    try:
        for port in ports:
            for _ in range(100):  # bounded: 10 s for the interpreter to start
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{port}/x", timeout=2) as answer:
                        assert answer.read().decode().startswith("hello from hello-v1")
                    break
                except OSError:
                    time.sleep(0.1)
            else:
                raise AssertionError(f"nothing answered on {port}")
        app.send_signal(signal.SIGTERM)
        assert app.wait(timeout=10) == 0
    finally:
        app.kill()
        app.wait()
