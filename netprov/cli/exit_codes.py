"""Every exit code netprov uses, in one place (see docs/adr/0002-exit-codes.md)."""

from enum import IntEnum


class ExitCode(IntEnum):
    OK = 0            # success; for `plan`, also "no changes" under --detailed-exitcode
    ERROR = 1         # invalid inventory, remote failure, refused change, stale plan, no convergence
    CHANGES = 2       # `plan --detailed-exitcode`: the plan has changes (Terraform's convention); `status`: differs
    USAGE = 64        # bad command line (EX_USAGE), so a script never mistakes it for "changes"
    INTERRUPTED = 130  # Ctrl-C
