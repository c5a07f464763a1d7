#!/usr/bin/env bash
# Install the Debian packages the test suite drives for real (only those missing).
# dnsmasq-base: the dnsmasq binary without a system service; openssh-server: sshd for push tests;
# qemu-system-x86, ipxe, ipxe-qemu, ovmf, mtools, dosfstools: the boot tests; tgt: a real iSCSI target;
# iproute2: network namespaces.
set -euo pipefail
packages=(dnsmasq-base openssh-server openssh-client iproute2 qemu-system-x86 ipxe ipxe-qemu ovmf tgt mtools dosfstools)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null && sudo -n true 2>/dev/null; then SUDO="sudo -n"; else
    echo "install-test-deps: missing ${missing[*]}; not root and no password-less sudo:" \
         "install them yourself, or the tests that need them skip" >&2
    exit 0
  fi
else
  SUDO=""
fi
echo "install-test-deps: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
# policy-rc.d keeps package scripts from starting system services (a host tgtd on 0.0.0.0:3260, sshd).
if [ -d /usr/sbin ] && [ ! -e /usr/sbin/policy-rc.d ]; then
  printf '#!/bin/sh\nexit 101\n' | $SUDO tee /usr/sbin/policy-rc.d >/dev/null
  $SUDO chmod +x /usr/sbin/policy-rc.d
  trap '$SUDO rm -f /usr/sbin/policy-rc.d' EXIT
fi
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
