"""The local stand-in for the registry's ``debian:bookworm-slim``: there is no Docker registry
here, so the base is built from Debian's packages (debootstrap minbase, from the mirror the
machine's apt already uses), slimmed as the official slim image is, and imported under the
same name so that the Dockerfiles build unchanged. Users' builds get the registry's image.

The machine reaches PyPI through certificate authorities it added locally
(``/usr/local/share/ca-certificates``); the stand-in trusts them too (and pip is pointed at
the system bundle), so that pip inside a build works. No host name is written anywhere.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

from docker_images.daemon import Daemon

BASE_TAG = "debian:bookworm-slim"
SUITE = "bookworm"
#: bump to rebuild every machine's kept base
RECIPE = "2"
STAND_IN_LABEL = "org.tei-ort.image-test.stand-in"
LOCAL_CAS = Path("/usr/local/share/ca-certificates")
#: what the official image's apt keeps out of layers (its apt.conf.d/docker-clean and
#: docker-no-languages): no downloaded .debs, no package caches, no translations
_RM = (
    "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin"
)
APT_CLEAN = f"""\
DPkg::Post-Invoke {{ "{_RM} || true"; }};
APT::Update::Post-Invoke {{ "{_RM} || true"; }};
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
Acquire::Languages "none";
"""
#: what the official slim image leaves out of every package (its dpkg.cfg.d excludes)
SLIM_DPKG_CFG = """\
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/groff/*
path-exclude /usr/share/info/*
path-exclude /usr/share/lintian/*
path-exclude /usr/share/linda/*
path-exclude /usr/share/locale/*
"""


def debian_mirror() -> str:
    """The Debian mirror (main archive) the machine's apt uses."""
    texts = [p.read_text() for p in Path("/etc/apt/sources.list.d").glob("*.sources")]
    listing = Path("/etc/apt/sources.list")
    if listing.is_file():
        texts.append(listing.read_text())
    for text in texts:
        for uri in re.findall(r"(?:URIs:|^deb)\s+(\S+)", text, flags=re.MULTILINE):
            if "security" not in uri and uri.startswith("http"):
                return uri.rstrip("/")
    raise RuntimeError("no Debian mirror in /etc/apt/sources.list{,.d}: cannot debootstrap")


def ensure_base(daemon: Daemon, root: Path, log: Path) -> str:
    """Import the stand-in if the daemon lacks it (debootstrap once, kept as a tarball)."""
    for stale in root.glob(f"base-{SUITE}-*.tar"):  # an earlier recipe's
        if stale.name != f"base-{SUITE}-{RECIPE}.tar":
            stale.unlink()
    found = daemon.run(
        ["image", "inspect", "--format", "{{json .Config.Labels}}", BASE_TAG], check=False
    )
    if found.returncode == 0 and f'"{STAND_IN_LABEL}":"{RECIPE}"' in found.stdout:
        return "kept from an earlier run"
    tarball = root / f"base-{SUITE}-{RECIPE}.tar"
    how = "imported from the kept root file system"
    if not tarball.is_file():
        _debootstrap(root, tarball, log)
        how = "built with debootstrap and imported"
    changes = [
        f"LABEL {STAND_IN_LABEL}={RECIPE}",
        "ENV PIP_CERT=/etc/ssl/certs/ca-certificates.crt",
        'CMD ["bash"]',
    ]
    args = ["import"]
    for change in changes:
        args += ["--change", change]
    with tarball.open("rb") as data:
        done = subprocess.run(
            ["/usr/bin/docker", *args, "-", BASE_TAG],
            stdin=data,
            env=daemon.env,
            capture_output=True,
            text=True,
            check=False,
        )
    if done.returncode != 0:
        raise RuntimeError(f"docker import failed: {done.stderr.strip()}")
    return how


def _debootstrap(root: Path, tarball: Path, log: Path) -> None:
    rootfs = root / "rootfs-build"
    if rootfs.exists():
        shutil.rmtree(rootfs)
    mirror = debian_mirror()
    with log.open("ab") as out:
        subprocess.run(
            [
                "debootstrap",
                "--variant=minbase",
                "--include=ca-certificates",
                SUITE,
                str(rootfs),
                mirror,
            ],
            stdout=out,
            stderr=out,
            check=True,
        )
        # apt inside builds reads the machine's Debian sources (main, updates, security)
        sources = rootfs / "etc/apt/sources.list.d"
        for source in Path("/etc/apt/sources.list.d").glob("debian*.sources"):
            shutil.copy(source, sources / source.name)
            (rootfs / "etc/apt/sources.list").unlink(missing_ok=True)
        (rootfs / "etc/dpkg/dpkg.cfg.d/docker-slim").write_text(SLIM_DPKG_CFG)
        (rootfs / "etc/apt/apt.conf.d/docker-clean").write_text(APT_CLEAN)
        for cert in LOCAL_CAS.glob("*.crt"):
            shutil.copy(cert, rootfs / "usr/local/share/ca-certificates" / cert.name)
        subprocess.run(
            ["chroot", str(rootfs), "update-ca-certificates"], stdout=out, stderr=out, check=True
        )
    for pattern in (
        "usr/share/man/*",
        "usr/share/info/*",
        "usr/share/locale/*",
        "usr/share/groff/*",
        "usr/share/lintian/*",
        "var/lib/apt/lists/*",
        "var/cache/apt/*",
        "var/log/*",
        "var/cache/debconf/*-old",
    ):
        for path in rootfs.glob(pattern):
            _remove(path)
    for doc in (rootfs / "usr/share/doc").glob("*"):
        for path in doc.iterdir() if doc.is_dir() else [doc]:
            if path.name != "copyright":
                _remove(path)
    partial = tarball.with_suffix(".partial")
    subprocess.run(
        ["tar", "-C", str(rootfs), "--numeric-owner", "-cf", str(partial), "."], check=True
    )
    partial.rename(tarball)
    shutil.rmtree(rootfs)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)
