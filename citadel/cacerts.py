"""Istio's `cacerts` layout, and the directory that keeps a CA in it.

Workloads trust each other through roots they all share, so the CA must survive restarts. Istio
keeps a CA as four PEM files, whether in a directory, in its `cacerts` Secret (an operator's
plugged-in CA) or in `istio-ca-secret` (the self-signed one): `ca-cert.pem` and `ca-key.pem`
sign, `root-cert.pem` is the trust bundle (every root a mesh certificate may chain to), and
`cert-chain.pem` leads from the signing certificate up to a root (empty for a root itself).
`CaMaterial` is that layout as bytes, the one form every store reads and writes and
`CertificateAuthority.from_material` parses; `CaStore` is what a store offers, and
`DirectoryStore` the store of the local mesh (and of a mounted Secret).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

CA_CERT = "ca-cert.pem"
CA_KEY = "ca-key.pem"
ROOT_CERT = "root-cert.pem"
CERT_CHAIN = "cert-chain.pem"


class CaStoreError(RuntimeError):
    """The store cannot be read or written, or holds something that is not a CA."""


@dataclass(frozen=True)
class CaMaterial:
    """A CA's PEM files by name; `cert_chain` may be empty."""

    ca_cert: bytes
    ca_key: bytes
    root_cert: bytes
    cert_chain: bytes = b""

    @classmethod
    def from_files(cls, files: Mapping[str, bytes], where: str) -> CaMaterial:
        """The material in `files` (name -> content); `where` names their origin in errors."""
        missing = [name for name in (CA_CERT, CA_KEY, ROOT_CERT) if not files.get(name)]
        if missing:
            raise CaStoreError(f"{where} has no {' or '.join(missing)}")
        return cls(files[CA_CERT], files[CA_KEY], files[ROOT_CERT], files.get(CERT_CHAIN, b""))

    def files(self) -> dict[str, bytes]:
        return {
            CA_CERT: self.ca_cert,
            CA_KEY: self.ca_key,
            ROOT_CERT: self.root_cert,
            CERT_CHAIN: self.cert_chain,
        }


class CaStore(Protocol):
    """Where a CA is kept. `load` first: `replace` overwrites what it read."""

    @property
    def description(self) -> str:
        """Where, for logs and errors."""
        ...

    async def load(self) -> CaMaterial | None:
        """The stored CA, None if there is none yet."""
        ...

    async def create(self, material: CaMaterial) -> CaMaterial:
        """Store a first CA; if another process stored one meanwhile, that one is returned."""
        ...

    async def replace(self, material: CaMaterial) -> None:
        """Overwrite the CA `load` returned (a rotation); a store shared between processes
        refuses if it changed since."""
        ...


def write_atomically(path: Path, data: bytes, mode: int = 0o644) -> None:
    """Write `data` to `path` with `mode`, so that a reader sees the old content or the new."""
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as file:
            file.write(data)
        os.replace(temporary, path)
    except BaseException:
        os.unlink(temporary)
        raise


def write_private(path: Path, data: bytes) -> None:
    """Write `data` to `path` atomically, readable only by the owner (mode 0600)."""
    write_atomically(path, data, 0o600)


def read_directory(directory: Path) -> CaMaterial | None:
    """The CA in `directory`, None if it holds no `ca-key.pem` (no CA yet)."""
    if not (directory / CA_KEY).exists():
        return None
    files = {}
    for name in (CA_CERT, CA_KEY, ROOT_CERT, CERT_CHAIN):
        path = directory / name
        if path.exists():
            files[name] = path.read_bytes()
    return CaMaterial.from_files(files, f"the CA directory {directory}")


def write_directory(directory: Path, material: CaMaterial) -> None:
    """Write every file of `material`, the key last: its presence marks a complete CA."""
    directory.mkdir(parents=True, exist_ok=True)
    if material.cert_chain:
        write_atomically(directory / CERT_CHAIN, material.cert_chain)
    else:
        (directory / CERT_CHAIN).unlink(missing_ok=True)
    write_atomically(directory / CA_CERT, material.ca_cert)
    write_atomically(directory / ROOT_CERT, material.root_cert)
    write_private(directory / CA_KEY, material.ca_key)


class DirectoryStore:
    """A CA directory, owned by this process (one citadel per directory)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    @property
    def description(self) -> str:
        return f"directory {self.directory}"

    async def load(self) -> CaMaterial | None:
        return read_directory(self.directory)

    async def create(self, material: CaMaterial) -> CaMaterial:
        write_directory(self.directory, material)
        return material

    async def replace(self, material: CaMaterial) -> None:
        write_directory(self.directory, material)
