"""A tiny boot disk for the end-to-end boot lab, built without any toolchain.

One 8 MiB raw image boots under both firmwares and says which machine's disk it is:

* **BIOS**: sector 0 holds 16-bit boot code that writes ``NETPROV-BOOT-OK <name>`` to COM1
  (I/O port 0x3f8) and halts; the sector ends in 0x55AA (iPXE's INT13 sanboot refuses a disk
  without it). The MBR partition table has one type-0xEF (EFI system) partition.
* **UEFI**: that partition holds a FAT file system (written with mtools, no mount) with
  ``\\EFI\\BOOT\\BOOTX64.EFI``: a hand-assembled PE32+ EFI application that prints the same
  marker through ``SystemTable->ConOut->OutputString`` and halts. iPXE's EFI ``sanboot``
  (and OVMF's own removable-media boot) finds and starts that file.

The machine name is embedded in the marker so tests can tell whose disk booted (a machine
must never boot someone else's disk).

Public API: :func:`marker`, :func:`build_disk`, :func:`mbr_boot_sector`, :func:`efi_app`,
:data:`MARKER_PREFIX`, :func:`tools_missing`.
"""

from __future__ import annotations

import shutil
import struct
import subprocess
from pathlib import Path

MARKER_PREFIX = "NETPROV-BOOT-OK"

DISK_SIZE = 8 * 1024 * 1024
SECTOR = 512
PART_START_LBA = 2048  # 1 MiB, the usual alignment
BOOT_LOAD_ADDR = 0x7C00


def marker(name: str) -> str:
    """The line a disk built for ``name`` prints when it boots."""
    return f"{MARKER_PREFIX} {name}"


def tools_missing() -> list[str]:
    """Binaries :func:`build_disk` needs that are not on PATH."""
    return [t for t in ("mkfs.fat", "mmd", "mcopy") if shutil.which(t) is None]


def _check_name(name: str) -> None:
    if not name or not all(33 <= ord(c) < 127 for c in name) or len(name) > 64:
        raise ValueError(f"machine name must be 1-64 printable ASCII characters without spaces: {name!r}")


# --------------------------------------------------------------------------------------------
# BIOS: the MBR
# --------------------------------------------------------------------------------------------

def mbr_boot_sector(name: str, part_start: int = PART_START_LBA,
                    part_sectors: int = DISK_SIZE // SECTOR - PART_START_LBA) -> bytes:
    """Sector 0: real-mode code printing the marker on COM1, a 0xEF partition entry, 0x55AA.

    Assembly (loaded at 0000:7C00)::

        cli
        xor  ax, ax
        mov  ds, ax
        cld
        mov  si, 0x7C00+msg
        mov  dx, 0x3F8
      next:
        lodsb
        test al, al
        jz   done
        out  dx, al          ; QEMU's 16550 takes THR writes without any set-up
        jmp  next
      done:
        hlt                  ; interrupts are off: stays here
        jmp  done
      msg: db "\\r\\nNETPROV-BOOT-OK <name>\\r\\n", 0
    """
    _check_name(name)
    msg_off = 23
    code = bytes([
        0xFA,                    # 0  cli
        0x31, 0xC0,              # 1  xor ax, ax
        0x8E, 0xD8,              # 3  mov ds, ax
        0xFC,                    # 5  cld
        0xBE, *struct.pack("<H", BOOT_LOAD_ADDR + msg_off),  # 6  mov si, imm16
        0xBA, 0xF8, 0x03,        # 9  mov dx, 0x3f8
        0xAC,                    # 12 next: lodsb
        0x84, 0xC0,              # 13 test al, al
        0x74, 0x03,              # 15 jz done (+3)
        0xEE,                    # 17 out dx, al
        0xEB, 0xF8,              # 18 jmp next (-8)
        0xF4,                    # 20 done: hlt
        0xEB, 0xFD,              # 21 jmp done (-3)
    ])
    assert len(code) == msg_off
    msg = f"\r\n{marker(name)}\r\n".encode("ascii") + b"\0"
    boot = code + msg
    if len(boot) > 440:
        raise ValueError("boot code too long")
    sector = bytearray(SECTOR)
    sector[: len(boot)] = boot
    # Disk signature (bytes 440..443): derived from the name so disks differ.
    sector[440:444] = struct.pack("<I", (sum(name.encode()) * 2654435761) & 0xFFFFFFFF)
    # Partition entry 1 at 0x1BE: not active, CHS "beyond 1024 cylinders", type 0xEF, LBA start/size.
    entry = bytes([0x00, 0xFE, 0xFF, 0xFF, 0xEF, 0xFE, 0xFF, 0xFF]) + struct.pack("<II", part_start, part_sectors)
    sector[0x1BE:0x1BE + 16] = entry
    sector[510:512] = b"\x55\xAA"
    return bytes(sector)


# --------------------------------------------------------------------------------------------
# UEFI: a minimal PE32+ application
# --------------------------------------------------------------------------------------------

_FILE_ALIGN = 0x200
_SECT_ALIGN = 0x1000
_TEXT_RVA = 0x1000


def efi_app(name: str) -> bytes:
    """A PE32+ EFI application (subsystem 10) printing the marker through ConOut, then halting.

    Entry ``efi_main(ImageHandle=rcx, SystemTable=rdx)``, Microsoft x64 ABI::

        sub  rsp, 0x28               ; shadow space + keep rsp 16-byte aligned at the call
        mov  rcx, [rdx+0x40]         ; SystemTable->ConOut
        lea  rdx, [rip+msg]          ; CHAR16 *String
        call [rcx+0x08]              ; ConOut->OutputString(ConOut, msg)
      hang:
        cli
        hlt
        jmp  hang
      msg: dw "\\r\\nNETPROV-BOOT-OK <name>\\r\\n", 0   (UTF-16LE)

    The code is position independent and the image carries no relocations (relocations are
    not marked stripped, so the loader may place it anywhere).
    """
    _check_name(name)
    code = bytearray()
    code += b"\x48\x83\xEC\x28"          # sub rsp, 0x28
    code += b"\x48\x8B\x4A\x40"          # mov rcx, [rdx+0x40]
    lea_at = len(code)
    code += b"\x48\x8D\x15\x00\x00\x00\x00"  # lea rdx, [rip+disp32]
    code += b"\xFF\x51\x08"              # call [rcx+8]
    code += b"\xFA\xF4\xEB\xFC"          # hang: cli; hlt; jmp hang (-4)
    while len(code) % 8:
        code += b"\x90"
    msg_at = len(code)
    code[lea_at + 3: lea_at + 7] = struct.pack("<i", msg_at - (lea_at + 7))
    code += f"\r\n{marker(name)}\r\n".encode("utf-16-le") + b"\0\0"

    raw_size = (len(code) + _FILE_ALIGN - 1) // _FILE_ALIGN * _FILE_ALIGN
    virt_size = len(code)
    size_of_image = _TEXT_RVA + (virt_size + _SECT_ALIGN - 1) // _SECT_ALIGN * _SECT_ALIGN
    headers_size = _FILE_ALIGN

    dos = bytearray(64)
    dos[0:2] = b"MZ"
    struct.pack_into("<I", dos, 0x3C, 64)  # e_lfanew

    coff = struct.pack(
        "<HHIIIHH",
        0x8664,   # Machine: x86-64
        1,        # NumberOfSections
        0, 0, 0,  # TimeDateStamp, PointerToSymbolTable, NumberOfSymbols
        240,      # SizeOfOptionalHeader (PE32+ with 16 data directories)
        0x0022,   # EXECUTABLE_IMAGE | LARGE_ADDRESS_AWARE (relocations NOT stripped)
    )
    opt = struct.pack(
        "<HBBIIIII",
        0x20B,            # PE32+
        1, 0,             # linker version
        raw_size,         # SizeOfCode
        0, 0,             # SizeOfInitializedData, SizeOfUninitializedData
        _TEXT_RVA,        # AddressOfEntryPoint
        _TEXT_RVA,        # BaseOfCode
    )
    opt += struct.pack(
        "<QIIHHHHHHIIIIHHQQQQII",
        0x10000000,       # ImageBase
        _SECT_ALIGN, _FILE_ALIGN,
        0, 0, 0, 0, 0, 0,  # OS / image / subsystem versions
        0,                # Win32VersionValue
        size_of_image,
        headers_size,
        0,                # CheckSum
        10,               # Subsystem: EFI_APPLICATION
        0,                # DllCharacteristics
        0x10000, 0x10000, 0x10000, 0x10000,  # stack/heap reserve/commit
        0,                # LoaderFlags
        16,               # NumberOfRvaAndSizes
    )
    opt += bytes(16 * 8)  # all data directories empty (no imports, no relocations)
    assert len(opt) == 240, len(opt)
    section = struct.pack(
        "<8sIIIIIIHHI",
        b".text",
        virt_size, _TEXT_RVA,
        raw_size, headers_size,
        0, 0, 0, 0,
        0x60000020,       # CODE | EXECUTE | READ
    )
    headers = bytes(dos) + b"PE\0\0" + coff + opt + section
    assert len(headers) <= headers_size
    image = headers + bytes(headers_size - len(headers)) + bytes(code) + bytes(raw_size - len(code))
    return image


# --------------------------------------------------------------------------------------------
# The whole disk
# --------------------------------------------------------------------------------------------

def build_disk(path: Path | str, name: str, size: int = DISK_SIZE) -> Path:
    """Write the 8 MiB boot disk for machine ``name`` to ``path`` and return the path.

    Sector 0 from :func:`mbr_boot_sector`; from LBA 2048 a FAT file system (``mkfs.fat``,
    then ``mmd``/``mcopy`` into the image file, nothing mounted) holding
    ``/EFI/BOOT/BOOTX64.EFI`` from :func:`efi_app`.
    """
    path = Path(path)
    _check_name(name)
    missing = tools_missing()
    if missing:
        raise RuntimeError(f"missing tools to build a disk image: {', '.join(missing)}")
    part_sectors = size // SECTOR - PART_START_LBA
    part = path.with_name(path.name + ".fat.tmp")
    efi = path.with_name(path.name + ".efi.tmp")
    try:
        part.unlink(missing_ok=True)
        subprocess.run(["mkfs.fat", "-C", "-n", "NETPROV", str(part), str(part_sectors * SECTOR // 1024)],
                       check=True, capture_output=True)
        efi.write_bytes(efi_app(name))
        env = {"MTOOLS_SKIP_CHECK": "1", "PATH": "/usr/bin:/bin:/usr/sbin:/sbin"}
        subprocess.run(["mmd", "-i", str(part), "::/EFI", "::/EFI/BOOT"], check=True, capture_output=True, env=env)
        subprocess.run(["mcopy", "-i", str(part), str(efi), "::/EFI/BOOT/BOOTX64.EFI"],
                       check=True, capture_output=True, env=env)
        with open(path, "wb") as f:
            f.write(mbr_boot_sector(name, PART_START_LBA, part_sectors))
            f.write(bytes(PART_START_LBA * SECTOR - SECTOR))
            f.write(part.read_bytes())
            f.truncate(size)
    finally:
        part.unlink(missing_ok=True)
        efi.unlink(missing_ok=True)
    return path
