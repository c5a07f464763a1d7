"""Unit checks of :mod:`tests.support.installer` (no root, no network): the initramfs archive, the
report parser and the iBFT LUN decoding the install-path boots rely on."""

from __future__ import annotations

import stat

import pytest

from tests.support import installer


def _read_newc(data: bytes) -> dict[str, tuple[int, bytes]]:
    """name -> (mode, data) of an uncompressed newc cpio, checking magic and 4-byte alignment."""
    out, off = {}, 0
    while True:
        assert data[off:off + 6] == b"070701", off
        fields = [int(data[off + 6 + 8 * i: off + 14 + 8 * i], 16) for i in range(13)]
        mode, size, namesize = fields[1], fields[6], fields[11]
        name_start = off + 110
        name = data[name_start:name_start + namesize - 1].decode()
        body = name_start + namesize
        body += -body % 4
        if name == "TRAILER!!!":
            return out
        out[name] = (mode, data[body:body + size])
        off = body + size
        off += -off % 4


def test_initramfs_holds_busybox_modules_init_and_only_digests(tmp_path):
    mods = []
    for name in ("iscsi_boot_sysfs.ko", "iscsi_ibft.ko"):
        (tmp_path / name).write_bytes(name.encode() * 3)
        mods.append(tmp_path / name)
    kernel = installer.Kernel("6.1.0-test", tmp_path / "vmlinuz", tuple(mods))
    busybox = tmp_path / "busybox"
    busybox.write_bytes(b"\x7fELF-fake")
    secret = "Not-printed-123"
    out = installer.build_initramfs(tmp_path / "initrd.img", kernel, {"sigma": installer.digest(secret)},
                                    busybox=busybox)
    data = out.read_bytes()
    entries = _read_newc(data)
    assert entries["bin/busybox"] == (stat.S_IFREG | 0o755, b"\x7fELF-fake")
    assert stat.S_ISLNK(entries["bin/sh"][0]) and entries["bin/sh"][1] == b"busybox"
    assert entries["lib/iscsi_ibft.ko"][1] == b"iscsi_ibft.ko" * 3
    assert entries["init"][0] == stat.S_IFREG | 0o755 and entries["init"][1].startswith(b"#!/bin/busybox sh")
    # the module load order: iscsi_ibft needs iscsi_boot_sysfs first
    init = entries["init"][1].decode()
    assert init.index("iscsi_boot_sysfs.ko") < init.index("iscsi_ibft.ko")
    assert entries["expected/sigma"][1] == installer.digest(secret).encode()
    assert secret.encode() not in data   # only the digest travels
    with pytest.raises(ValueError):
        installer.build_initramfs(tmp_path / "x.img", kernel, {"../etc": "00"}, busybox=busybox)


def test_parse_report_takes_the_vm_lines_only():
    text = ("[    1.0] booting\r\nNETPROV-IBFT start\nNETPROV-IBFT target-name=iqn.x:sigma\n"
            "NETPROV-IBFT chap-secret=matches  \nnoise NETPROV-IBFT chap-name=evil\nNETPROV-IBFT-END\n")
    assert installer.parse_report(text) == {"target-name": "iqn.x:sigma", "chap-secret": "matches"}


@pytest.mark.parametrize(("shown", "lun"), [("00000000", 0), ("01000000", 1), ("0f000000", 15)])
def test_lun_number_decodes_linux_unpadded_bytes(shown, lun):
    assert installer.lun_number(shown) == lun


@pytest.mark.parametrize("shown", ["0100000000000000", "1", "x1000000"])
def test_lun_number_refuses_what_it_cannot_decode(shown):
    with pytest.raises(ValueError):
        installer.lun_number(shown)
