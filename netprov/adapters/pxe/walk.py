"""Reading a PXE server in one SSH round trip: the walk script, the command that runs it, and its parsers.

The walk prints what each root holds (type, mode, size, sha256, netprov's header), the binaries' sources and
any unfinished activation, plus a preflight of what apply will need; ``parse_manifest`` and ``preflight`` turn
its output into a ``RemoteManifest`` and a list of problems. Pure text in and out: ``boot_host.PxeHost`` runs
the commands; nothing here writes to the server.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterable, Mapping

from netprov.adapters.pxe.scripts import q, sh_command
from netprov.adapters.pxe.pxe_settings import PxeSettings
from netprov.core.bootfiles import HEADER_MARKER, Root
from netprov.core.fileplan import OWNED_RECORD, TEMP_PREFIX, Activation, RemoteEntry, RemoteManifest
from netprov.errors import PathConfinementError

WALK = r"""
lock=$1; shift
if [ -r "$lock.pending" ]; then printf 'P|%s\n' "$(head -n 1 "$lock.pending")"; fi
# Preflight: what apply will need, so a missing piece is a plan-time error, before any change.
# C|tool: command missing; W|what|path: cannot be written (nearest existing ancestor when absent);
# L|root|link|real: a symlink on a root's path.
writable() {
  p=$1
  while [ ! -e "$p" ] && [ ! -L "$p" ]; do p=$(dirname -- "$p"); done
  [ -d "$p" ] && [ -w "$p" ] && [ -x "$p" ]
}
# (sbin directories too: dnsmasq and the like run under sudo, whose PATH has them)
while [ $# -gt 0 ]; do
  a=$1; shift
  [ "$a" = "--roots" ] && break
  PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin" command -v "$a" >/dev/null 2>&1 || printf 'C|%s\n' "$a"
done
lockdir=$(dirname -- "$lock")
if ! writable "$lockdir"; then printf 'W|lock directory|%s\n' "$lockdir"
elif [ -e "$lock" ] && [ ! -w "$lock" ]; then printf 'W|lock file|%s\n' "$lock"; fi
# Pi-hole flavour: will pihole-FTL read the drop-in? v6 (pihole.toml present) only with
# [misc] etc_dnsmasq_d = true; v5 always reads /etc/dnsmasq.d. Q|v6|<value or unset or unreadable>; Q|v5|
if [ -n "${PIHOLE_TOML:-}" ]; then
  if [ -e "$PIHOLE_TOML" ]; then
    if t=$(cat -- "$PIHOLE_TOML" 2>/dev/null || $PIHOLE_SUDO cat -- "$PIHOLE_TOML" 2>/dev/null </dev/null); then
      v=$(printf '%s\n' "$t" | awk '/^[[:space:]]*\[/ { sec = $0; gsub(/[][[:space:]]/, "", sec); next }
        sec == "misc" && /^[[:space:]]*etc_dnsmasq_d[[:space:]]*=/ {
          sub(/^[^=]*=[[:space:]]*/, ""); sub(/[[:space:]#].*$/, ""); print; exit }')
      printf 'Q|v6|%s\n' "${v:-unset}"
    else printf 'Q|v6|unreadable\n'; fi
  else printf 'Q|v5|\n'; fi
fi
set -f
while [ $# -gt 0 ]; do
  a=$1; shift
  [ "$a" = "--sources" ] && break
  name=${a%%=*}; dir=${a#*=}
  p=""; link=""; oldifs=$IFS; IFS=/
  for c in ${dir#/}; do
    p="$p/$c"
    if [ -L "$p" ]; then link=$p; break; fi
    [ -e "$p" ] || break
  done
  IFS=$oldifs
  if [ -n "$link" ]; then printf 'L|%s|%s|%s\n' "$name" "$link" "$(readlink -- "$link" 2>/dev/null)"; continue; fi
  writable "$dir" || printf 'W|%s|%s\n' "$name" "$dir"
  if [ ! -e "$dir" ]; then printf 'M|%s\n' "$name"; continue; fi
  if [ ! -d "$dir" ]; then printf 'B|%s\n' "$name"; continue; fi
  cd "$dir" || { printf 'B|%s\n' "$name"; continue; }
  printf 'R|%s\n' "$name"
  find . -mindepth 1 -exec stat -c 'S|%a|%s|%F|%n' {} + 2>/dev/null
  find . -type f -exec sha256sum {} + 2>/dev/null | sed 's/^/X|/'
  find . -type f -exec awk 'FNR<=3 && index($0, m) {print "H|" FILENAME; nextfile} FNR>=3 {nextfile}' m="$HDR" {} + 2>/dev/null
  if [ -f """ + OWNED_RECORD + r""" ]; then grep -v '^#' """ + OWNED_RECORD + r""" | sed 's/^/O|/'; fi
done
set +f
for s in "$@"; do
  if [ -f "$s" ] && [ -r "$s" ] && h=$(sha256sum < "$s"); then printf 'Y|%s|%s\n' "${h%% *}" "$s"
  else printf 'N|%s\n' "$s"; fi
done
echo 'END|'
"""

FETCH = r"""
for f; do
  if [ -f "$f" ] && [ -r "$f" ]; then n=$(wc -c < "$f"); printf 'F|%s\n' $n; cat "$f"; else printf 'F|-1\n'; fi
done
"""

STAT_TYPES = {"regular file": "file", "regular empty file": "file", "directory": "dir",
               "symbolic link": "symlink"}


def needed_tools(s: PxeSettings, user: str) -> list[str]:
    """Commands the server must have for apply (checked by the read round trip)."""
    tools = ["sh", "flock", "sha256sum", "stat", "find", "awk", "sed", "grep", "head", "wc", "cat", "tar",
             "mktemp", "chmod", "cp", "mv", "ln", "rm", "mkdir", "dirname"]
    if s.sudo and user != "root":
        tools.append("sudo")
    try:
        test = s.test_command.format(conf="x", dnsmasq=q(s.dnsmasq))
    except (KeyError, ValueError, IndexError):
        test = ""
    for cmd in (test, s.restart_command, s.reload_command):
        first = _first_word(cmd)
        if first and first not in tools:
            tools.append(first)
    return tools


def walk_command(s: PxeSettings, user: str, rootmap: Mapping[Root, str], sources: Iterable[str]) -> str:
    """The one command that reads ``rootmap`` and ``sources`` and checks what apply will need."""
    args = [s.lock_path, *needed_tools(s, user), "--roots"]
    args += [f"{r.value}={d}" for r, d in sorted(rootmap.items())]
    args += ["--sources", *sources]
    env = f"HDR={q(HEADER_MARKER)}; export HDR; "
    if s.flavor == "pihole":
        sudo = "sudo -n" if s.sudo and user != "root" else "false"
        env += f"PIHOLE_TOML={q(s.pihole_toml)}; PIHOLE_SUDO={q(sudo)}; export PIHOLE_TOML PIHOLE_SUDO; "
    return env + sh_command(WALK, args)


def fetch_command(paths: Iterable[str]) -> str:
    """The command that prints the contents of ``paths`` (each after an ``F|<size>`` line; -1: unreadable)."""
    return sh_command(FETCH, paths)


def parse_fetched(keys: list[tuple[Root, str]], out: bytes) -> dict[tuple[Root, str], bytes]:
    """``fetch_command``'s output -> the contents of each key that was readable; ValueError when it is
    incomplete or garbled."""
    pos, texts = 0, {}
    for key in keys:
        nl = out.find(b"\n", pos)
        header = out[pos:nl].decode("ascii", "replace") if nl >= 0 else ""
        m = re.fullmatch(r"F\|(-1|\d{1,12})", header.strip())
        if m is None:
            raise ValueError("bad header")
        n = int(m.group(1))
        pos = nl + 1
        if n >= 0:
            if pos + n > len(out):
                raise ValueError("cut short")
            texts[key] = bytes(out[pos:pos + n])
            pos += n
    return texts


def _first_word(cmd: str) -> str | None:
    """The program a simple shell command starts (None when it is not a plain word)."""
    try:
        words = shlex.split(cmd)
    except ValueError:
        return None
    if not words or not re.fullmatch(r"[A-Za-z0-9_./+-]+", words[0]) or "=" in words[0]:
        return None
    return words[0]


def preflight(server: str, roots: Mapping[Root, str], text: str) -> list[str]:
    """The walk's preflight lines (C|, W|, L|) as problems; raises for symlinked roots."""
    tools, unwritable, links = [], [], []
    for line in text.split("\n"):
        tag, _, rest = line.partition("|")
        if tag == "C":
            tools.append(rest)
        elif tag == "W":
            what, _, path = rest.partition("|")
            unwritable.append(f"{_root_label(what)} {path}")
        elif tag == "L":
            name, link, target = (rest.split("|", 2) + ["", ""])[:3]
            root_dir = roots.get(Root(name), "?") if name in _ROOT_NAMES else "?"
            links.append(f"{_root_label(name)} {root_dir} has a symlink on its path ({link}"
                         + (f" -> {target}" if target else "") + ")")
    if links:
        raise PathConfinementError(
            f"on {server}: " + "; ".join(links) + ". netprov does not follow symlinks out of a root: set the "
            "real directory in the inventory (nothing was changed)")
    problems = []
    if tools:
        problems.append("missing command(s): " + ", ".join(tools) + " (not found on the server's PATH)")
    if unwritable:
        problems.append("cannot write to " + ", ".join(unwritable) + " as the SSH user")
    return problems


def pihole_problems(s: PxeSettings, text: str) -> list[str]:
    """Flavour pihole: what the walk's Q| line says about Pi-hole reading netprov's drop-in."""
    if s.flavor != "pihole":
        return []
    for line in text.split("\n"):
        if line.startswith("Q|v6|"):
            value = line[len("Q|v6|"):].strip().strip("'\"").lower()
            if value == "true":
                return []
            if value == "unreadable":
                return [f"cannot read {s.pihole_toml} to check that Pi-hole v6 reads {s.dnsmasq_dir_hint}: "
                        "let the SSH user read it or use sudo"]
            return [f"Pi-hole v6 does not read {s.dnsmasq_dir_hint} (misc.etc_dnsmasq_d is {value} in "
                    f"{s.pihole_toml}): run `sudo pihole-FTL --config misc.etc_dnsmasq_d true` on the PXE server"]
    return []


_ROOT_NAMES = {r.value for r in Root}
_ROOT_FIELDS = {"tftp": "tftp_root", "dnsmasq": "dnsmasq_dir", "hosts": "hosts_dir", "http": "http_root"}


def _root_label(name: str) -> str:
    return _ROOT_FIELDS.get(name, name)


def parse_manifest(server: str, roots: Mapping[Root, str], text: str) -> RemoteManifest:
    """Parse the walk's output (pure; exposed for tests)."""
    entries: dict[tuple[Root, str], dict] = {}
    missing, bad, stale = set(), set(), []
    owned: dict[Root, set[str]] = {}
    headers: set[tuple[Root, str]] = set()
    sources: dict[str, str | None] = {}
    pending = Activation.NONE
    cur: Root | None = None
    for line in text.split("\n"):
        tag, _, rest = line.partition("|")
        if tag == "R":
            cur = Root(rest)
        elif tag == "M":
            missing.add(Root(rest))
        elif tag == "B":
            bad.add(Root(rest))
        elif tag == "P":
            try:
                pending = Activation(rest.strip())
            except ValueError:
                pending = Activation.RESTART
        elif tag == "Y":
            h, _, src = rest.partition("|")
            sources[src] = h
        elif tag == "N":
            sources[rest] = None
        elif cur is None:
            continue
        elif tag == "S":
            parts = rest.split("|", 3)
            if len(parts) != 4 or not parts[3].startswith("./"):
                continue
            mode, size, ftype, path = parts
            entries.setdefault((cur, path[2:]), {}).update(
                type=STAT_TYPES.get(ftype, "other"), mode=int(mode, 8), size=int(size))
        elif tag == "X":
            h, sep, path = rest.partition("  ")
            if len(h) == 64 and sep and path.startswith("./"):
                entries.setdefault((cur, path[2:]), {})["sha256"] = h
        elif tag == "H" and rest.startswith("./"):
            headers.add((cur, rest[2:]))
        elif tag == "O":
            p = rest.strip()
            if p:
                owned.setdefault(cur, set()).add(p)
    out: dict[tuple[Root, str], RemoteEntry] = {}
    for (root, path), e in entries.items():
        base = path.rsplit("/", 1)[-1]
        if base.startswith(TEMP_PREFIX):
            stale.append((root, path))
            continue
        if path == OWNED_RECORD or "type" not in e:
            continue
        managed = e["type"] == "file" and ((root, path) in headers or path in owned.get(root, ()))
        out[(root, path)] = RemoteEntry(root, path, e["type"], e.get("sha256"), managed,
                                        e.get("mode"), e.get("size"))
    return RemoteManifest(server, dict(roots), out, frozenset(missing), frozenset(bad), sources,
                          {r: frozenset(v) for r, v in owned.items()}, {}, tuple(sorted(stale)), pending)
