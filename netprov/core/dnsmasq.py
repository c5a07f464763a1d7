"""dnsmasq facts as pure functions.

``dnsmasq --test`` parses the main config and conf-dir files but *not* the
contents of ``dhcp-hostsdir`` files, so a broken host line would only show up when
dnsmasq re-reads it. ``config_for_test`` builds one self-contained config that
inlines every host line as ``dhcp-host=`` (and drops the hostsdir directive, whose
directory may not exist where the test runs), so one ``--test`` checks it all.
"""

from __future__ import annotations

from collections.abc import Iterable

#: The group Debian's and Ubuntu's dnsmasq runs as, so the group that may read netprov's 0640 CHAP-bearing
#: scripts (``secret_group``'s default). dnsmasq drops to ``--group``, else its compiled-in CHGRP "dip" when
#: that group exists (src/config.h, src/dnsmasq.c: "implement group defaults, "dip" if available");
#: Debian's service passes only ``-u dnsmasq``, and that user's own group (nogroup) is not used.
SECRET_GROUP = "dip"


def host_lines(text: str) -> list[str]:
    """The dhcp-host entries of a hostsdir file (comments and blanks dropped)."""
    return [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]


def config_for_test(drop_in: str, host_files: Iterable[str]) -> str:
    """A config equivalent to ``drop_in`` + its hostsdir files, for ``dnsmasq --test``."""
    lines = [line for line in drop_in.splitlines() if not line.startswith("dhcp-hostsdir=")]
    for text in host_files:
        lines += [f"dhcp-host={entry}" for entry in host_lines(text)]
    return "\n".join(lines) + "\n"
