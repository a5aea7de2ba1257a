"""The pure parts of the namespace plumbing: commands run in a pod, link and tag bookkeeping."""

from __future__ import annotations

import ipaddress
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from localmesh.netns import Netns, NetnsError, free_link, running, tag_of, unreadable_for
from localmesh.state import process_alive

LINKS = ipaddress.IPv4Network("198.19.255.0/24")


def test_a_pod_command_gets_exactly_its_environment_then_its_user() -> None:
    argv = Netns("lm1x1-p.default").exec_argv("python", "-m", "app", uid=1000, env={"A": "1"})
    assert argv == [
        *("ip", "netns", "exec", "lm1x1-p.default"),
        *("env", "-i", "A=1"),  # as root: the interpreter may sit behind a root-only directory
        *("setpriv", "--reuid=1000", "--regid=1000", "--clear-groups"),
        *("python", "-m", "app"),
    ]
    assert Netns("n").exec_argv("ss") == ["ip", "netns", "exec", "n", "ss"]


def test_the_root_link_avoids_every_network_the_host_uses() -> None:
    assert free_link(LINKS, []) == ipaddress.IPv4Network("198.19.255.0/30")
    taken = [
        ipaddress.IPv4Network("198.19.255.0/30"),  # another mesh's link
        ipaddress.IPv4Network("198.19.255.5/32"),  # an address of the host
    ]
    assert free_link(LINKS, taken) == ipaddress.IPv4Network("198.19.255.8/30")
    with pytest.raises(NetnsError, match="no free /30"):
        free_link(LINKS, [ipaddress.IPv4Network("198.19.0.0/16")])


def test_tags_are_read_back_from_namespace_names() -> None:
    assert tag_of("lm", "lm123x4-hub") == "lm123x4"
    assert tag_of("lm", "lm123x4-productpage-v1.default") == "lm123x4"
    assert tag_of("lm", "mcap123x4-hub") is None
    assert tag_of("lm", "lm123-hub") is None


def test_a_killed_process_its_parent_has_not_reaped_no_longer_runs() -> None:
    assert running(os.getpid())
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    for _ in range(100):  # bounded: 10 s for it to exit (it stays a zombie: nobody waits)
        if not running(child.pid):
            break
        time.sleep(0.1)
    assert not running(child.pid) and process_alive(child.pid)  # a zombie: signals still "work"
    child.wait()
    assert not running(child.pid)


@pytest.mark.skipif(os.geteuid() != 0, reason="switching to another uid needs root")
def test_what_another_uid_cannot_read_is_found_as_that_uid() -> None:
    # Not below pytest's tmp_path: its base folder is itself 0700.
    with tempfile.TemporaryDirectory(dir="/tmp") as made:
        root = Path(made)
        root.chmod(0o755)
        shared, private = root / "shared", root / "private"
        for folder, mode in ((shared, 0o755), (private, 0o700)):
            folder.mkdir()
            (folder / "code.py").write_text("")
            (folder / "code.py").chmod(0o644)
            folder.chmod(mode)
        readable, hidden = shared / "code.py", private / "code.py"  # the folder is closed

        assert unreadable_for(1000, [readable, hidden]) == [hidden]
        assert unreadable_for(0, [readable, hidden]) == []
