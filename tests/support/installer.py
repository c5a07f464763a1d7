"""A tiny "installer" for the install-path boot tests: a real Debian kernel and a busybox initramfs
whose ``/init`` prints what the iBFT says, then powers off.

    kernel = installer.fetch_kernel()                  # cached .deb -> vmlinuz + the two iBFT modules
    initrd = installer.build_initramfs(out, kernel, chap_digests={"user": sha256(secret)})
    installer.parse_report(serial_text)                # {"initiator-name": ..., "target-name": ..., ...}

* **Kernel**: ``apt-get download`` of the versioned package ``linux-image-cloud-amd64`` depends on
  (a Debian registry must be reachable the first time; ``apt-get update`` is run once if apt's lists
  don't know the package). The .deb is kept in :data:`CACHE_DIR` (``NETPROV_TEST_CACHE`` overrides
  it), and only ``vmlinuz`` plus ``iscsi_boot_sysfs.ko`` and ``iscsi_ibft.ko`` are unpacked next to
  it (never installed into the host's /boot). Later runs reuse them without any network.
* **busybox**: the static binary of the ``busybox-static`` package (``scripts/install-test-deps.sh``
  installs it); when it is not installed, the package is downloaded into the cache the same way.
* **initramfs**: an uncompressed newc cpio written here in Python (no ``cpio`` binary needed):
  busybox, the two modules, ``/init`` and, per CHAP user, the sha256 of the secret the test expects
  (``/expected/<user>``). ``/init`` prints ``NETPROV-IBFT <key>=<value>`` lines: the initiator name,
  the target's name, address, port and LUN, the CHAP user, and ``chap-secret=matches`` /
  ``chap-secret=differs`` / ``chap-secret=none`` (it compares digests: the secret itself is never
  printed), then ``NETPROV-IBFT-END`` and powers off.

Public API: :data:`CACHE_DIR`, :class:`Kernel`, :func:`fetch_kernel`, :func:`busybox_path`,
:func:`build_initramfs`, :func:`parse_report`, :func:`lun_number`, :func:`digest`,
:data:`REPORT_END`, :class:`FetchError`.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import re
import shutil
import stat
import subprocess
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

CACHE_DIR = Path(os.environ.get("NETPROV_TEST_CACHE", "/var/cache/netprov-tests"))
META_PACKAGE = "linux-image-cloud-amd64"
MODULES = ("kernel/drivers/scsi/iscsi_boot_sysfs.ko", "kernel/drivers/firmware/iscsi_ibft.ko")
REPORT_PREFIX = "NETPROV-IBFT"
REPORT_END = "NETPROV-IBFT-END"


class FetchError(RuntimeError):
    pass


@dataclass(frozen=True)
class Kernel:
    version: str            # e.g. 6.1.0-57-cloud-amd64
    vmlinuz: Path
    modules: tuple[Path, ...]   # in load order: iscsi_boot_sysfs, iscsi_ibft


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _run(cmd: list[str], cwd: Path | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=cwd, check=False, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "DEBIAN_FRONTEND": "noninteractive", "LC_ALL": "C"})


def _apt_update() -> None:
    u = _run(["apt-get", "update", "-qq"])
    if u.returncode != 0:
        raise FetchError(f"apt-get update failed: {u.stderr.strip()[-500:]}")


def _apt_download(package: str, dest: Path, update: bool = True) -> Path:
    """``apt-get download PACKAGE`` into ``dest`` (after one ``apt-get update`` if apt's lists don't
    know it and ``update``). Returns the .deb."""
    def attempt() -> subprocess.CompletedProcess:
        return _run(["apt-get", "download", package], cwd=dest)

    r = attempt()
    if r.returncode != 0 and update:
        _apt_update()
        r = attempt()
    if r.returncode != 0:
        raise FetchError(f"apt-get download {package} failed: {r.stderr.strip()[-500:]}")
    debs = sorted(dest.glob(f"{package}_*.deb"), key=lambda p: p.stat().st_mtime)
    if not debs:
        raise FetchError(f"apt-get download {package} left no .deb in {dest}")
    return debs[-1]


def _kernel_package() -> str:
    """The versioned image package the meta package depends on, e.g. linux-image-6.1.0-57-cloud-amd64."""
    for attempt in range(2):
        r = _run(["apt-cache", "depends", META_PACKAGE])
        m = re.search(r"Depends:\s*(linux-image-\S+)", r.stdout)
        if m:
            return m.group(1)
        if attempt == 0:
            _run(["apt-get", "update", "-qq"])
    raise FetchError(f"apt-cache depends {META_PACKAGE}: no linux-image dependency "
                     f"({r.stderr.strip()[-300:]})")


class _Lock:
    """An exclusive flock on the cache dir (two parallel runs must not unpack into each other)."""

    def __init__(self, d: Path):
        self.path = d / ".lock"

    def __enter__(self):
        self.fh = open(self.path, "a")  # noqa: SIM115 - closed in __exit__
        fcntl.flock(self.fh, fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc):
        fcntl.flock(self.fh, fcntl.LOCK_UN)
        self.fh.close()


def _cached_kernel(cache: Path) -> Kernel | None:
    """The newest complete unpacked kernel in the cache (no network, no apt)."""
    for d in sorted(cache.glob("kernel-*"), reverse=True):
        version = d.name[len("kernel-"):]
        k = Kernel(version, d / "vmlinuz", tuple(d / Path(m).name for m in MODULES))
        if (d / ".complete").exists() and k.vmlinuz.exists() and all(m.exists() for m in k.modules):
            return k
    return None


def fetch_kernel(cache: Path | None = None) -> Kernel:
    """A Debian cloud kernel and its two iBFT modules, from the cache or downloaded into it."""
    cache = Path(cache or CACHE_DIR)
    cache.mkdir(parents=True, exist_ok=True)
    with _Lock(cache):
        k = _cached_kernel(cache)
        if k:
            return k
        package = _kernel_package()
        debs = sorted(cache.glob(f"{package}_*.deb"))
        if debs:
            deb = debs[-1]
        else:
            try:
                deb = _apt_download(package, cache, update=False)
            except FetchError:
                # stale lists name a version the mirror no longer has: update, resolve again
                _apt_update()
                package = _kernel_package()
                deb = _apt_download(package, cache, update=False)
        version = package[len("linux-image-"):]
        out = cache / f"kernel-{version}"
        shutil.rmtree(out, ignore_errors=True)
        out.mkdir()
        wanted = {f"./boot/vmlinuz-{version}": "vmlinuz"}
        wanted.update({f"./lib/modules/{version}/{m}": Path(m).name for m in MODULES})
        _extract(deb, wanted, out)
        (out / ".complete").write_text(deb.name + "\n")
        k = _cached_kernel(cache)
        assert k is not None, f"unpacked kernel incomplete in {out}"
        return k


def _extract(deb: Path, wanted: dict[str, str], out: Path) -> None:
    """Unpack the members ``wanted`` (tar name -> file name in ``out``) of a .deb's data tarball."""
    with tempfile.TemporaryDirectory() as tmp:
        tar_path = Path(tmp) / "data.tar"
        with open(tar_path, "wb") as fh:
            r = subprocess.run(["dpkg-deb", "--fsys-tarfile", str(deb)], stdout=fh, stderr=subprocess.PIPE,
                               check=False, timeout=300)
        if r.returncode != 0:
            err = r.stderr.decode(errors="replace")[-300:]
            raise FetchError(f"dpkg-deb --fsys-tarfile {deb.name}: {err}")
        found = set()
        with tarfile.open(tar_path) as tar:
            for member in tar:
                if member.name in wanted and member.isfile():
                    src = tar.extractfile(member)
                    assert src is not None
                    (out / wanted[member.name]).write_bytes(src.read())
                    found.add(member.name)
        missing = set(wanted) - found
        if missing:
            raise FetchError(f"{deb.name} lacks {sorted(missing)}")


def busybox_path(cache: Path | None = None) -> Path:
    """A static busybox: the installed busybox-static package's, else one unpacked into the cache."""
    installed = Path("/bin/busybox")
    if installed.exists() and _is_static(installed):
        return installed
    cache = Path(cache or CACHE_DIR)
    cache.mkdir(parents=True, exist_ok=True)
    target = cache / "busybox-static"
    with _Lock(cache):
        if not target.exists():
            debs = sorted(cache.glob("busybox-static_*.deb"))
            deb = debs[-1] if debs else _apt_download("busybox-static", cache)
            _extract(deb, {"./bin/busybox": "busybox-static.tmp"}, cache)
            os.replace(cache / "busybox-static.tmp", target)
        target.chmod(0o755)
    return target


def _is_static(path: Path) -> bool:
    """An ELF without a PT_INTERP program header (a dynamic busybox would need libc in the initramfs)."""
    try:
        data = path.read_bytes()[:4096]
    except OSError:
        return False
    return data[:4] == b"\x7fELF" and b"/lib64/ld-linux" not in data and b"/lib/ld-linux" not in data


# --------------------------------------------------------------------------------------------
# The initramfs
# --------------------------------------------------------------------------------------------

INIT = r"""#!/bin/busybox sh
/bin/busybox --install -s /bin
mkdir -p /proc /sys /dev
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs dev /dev 2>/dev/null
P=NETPROV-IBFT
echo "$P start"
for m in /lib/iscsi_boot_sysfs.ko /lib/iscsi_ibft.ko; do
  insmod "$m" || echo "$P insmod-failed=$m"
done
I=/sys/firmware/ibft
val() { [ -r "$1" ] && tr -d '\n' < "$1"; }
if [ ! -d "$I" ]; then
  echo "$P error=no /sys/firmware/ibft"
else
  echo "$P initiator-name=$(val $I/initiator/initiator-name)"
  echo "$P target-name=$(val $I/target0/target-name)"
  echo "$P target-ip=$(val $I/target0/ip-addr)"
  echo "$P target-port=$(val $I/target0/port)"
  echo "$P target-lun=$(val $I/target0/lun)"
  echo "$P chap-type=$(val $I/target0/chap-type)"
  user=$(val $I/target0/chap-name)
  echo "$P chap-name=$user"
  if [ ! -s "$I/target0/chap-secret" ]; then
    echo "$P chap-secret=none"
  elif [ -n "$user" ] && [ -r "/expected/$user" ] && \
       [ "$(val $I/target0/chap-secret | sha256sum | cut -d' ' -f1)" = "$(cat "/expected/$user")" ]; then
    echo "$P chap-secret=matches"
  else
    echo "$P chap-secret=differs"
  fi
  echo "$P nic-mac=$(val $I/ethernet0/mac)"
  echo "$P nic-ip=$(val $I/ethernet0/ip-addr)"
fi
echo "$P cmdline=$(cat /proc/cmdline)"
echo "NETPROV-IBFT-END"
sync
poweroff -f
"""


class _Cpio:
    """Writer of an uncompressed newc ("070701") cpio archive, what the kernel unpacks as initramfs."""

    def __init__(self):
        self.parts: list[bytes] = []
        self.ino = 1

    def _entry(self, name: str, mode: int, data: bytes = b"", nlink: int = 1) -> None:
        nb = name.encode() + b"\0"
        fields = [self.ino, mode, 0, 0, nlink, 0, len(data), 0, 0, 0, 0, len(nb), 0]
        self.ino += 1
        hdr = b"070701" + b"".join(b"%08X" % f for f in fields)
        blob = hdr + nb
        blob += b"\0" * (-len(blob) % 4)
        blob += data
        blob += b"\0" * (-len(blob) % 4)
        self.parts.append(blob)

    def dir(self, name: str) -> None:
        self._entry(name, stat.S_IFDIR | 0o755, nlink=2)

    def file(self, name: str, data: bytes, mode: int = 0o644) -> None:
        self._entry(name, stat.S_IFREG | mode, data)

    def symlink(self, name: str, target: str) -> None:
        self._entry(name, stat.S_IFLNK | 0o777, target.encode())

    def bytes(self) -> bytes:
        self._entry("TRAILER!!!", 0)
        return b"".join(self.parts)


def build_initramfs(out: Path, kernel: Kernel, chap_digests: dict[str, str] | None = None,
                    busybox: Path | None = None) -> Path:
    """Write the initramfs to ``out``. ``chap_digests``: CHAP user -> sha256 hex of the secret the
    test expects (see :func:`digest`)."""
    busybox = busybox or busybox_path()
    c = _Cpio()
    for d in ("bin", "sbin", "lib", "dev", "proc", "sys", "expected"):
        c.dir(d)
    c.file("bin/busybox", busybox.read_bytes(), 0o755)
    c.symlink("bin/sh", "busybox")
    for m in kernel.modules:
        c.file(f"lib/{m.name}", m.read_bytes())
    for user, hexdigest in (chap_digests or {}).items():
        if "/" in user or not user:
            raise ValueError(f"bad CHAP user {user!r}")
        c.file(f"expected/{user}", hexdigest.encode())
    c.file("init", INIT.encode(), 0o755)
    out = Path(out)
    out.write_bytes(c.bytes())
    out.chmod(0o644)
    return out


def parse_report(text: str) -> dict[str, str]:
    """``NETPROV-IBFT key=value`` lines of a serial log -> dict (the last value of each key)."""
    out: dict[str, str] = {}
    for m in re.finditer(rf"^{REPORT_PREFIX} ([a-z-]+)=(.*?)\s*$", text, re.MULTILINE):
        out[m.group(1)] = m.group(2)
    return out


def lun_number(ibft_lun: str) -> int:
    """The iBFT's 8-byte SCSI LUN as Linux's iscsi_ibft prints it -> the LUN number.

    The driver prints each of the 8 bytes with ``%x``, unpadded: LUN 1 (bytes ``00 01 00 …``) reads
    ``01000000``. That is unambiguous only when every byte is below 16 (8 characters), which holds for
    the small LUNs a flat/peripheral address gives (LUN = bytes 0-1 big-endian, low 14 bits)."""
    s = ibft_lun.strip()
    if not re.fullmatch(r"[0-9a-fA-F]{8}", s):
        raise ValueError(f"iBFT LUN {ibft_lun!r} is not 8 one-digit bytes")
    b = [int(ch, 16) for ch in s]
    return ((b[0] << 8) | b[1]) & 0x3FFF
