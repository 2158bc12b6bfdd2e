#!/bin/sh
# Install toolchain shims that dispatch to lucky_double.toolchain by name,
# plus /bin/ash (busybox) for Dockerfiles that set SHELL to it.
set -eu
echo /opt/lhd-doubles > /usr/lib/python3/dist-packages/lhd-doubles.pth
for tool in "$@"; do
  printf '#!/usr/bin/python3\nimport sys\nsys.argv[0] = "%s"\nfrom lucky_double.toolchain import main\nmain()\n' "$tool" > "/usr/local/bin/$tool"
  chmod +x "/usr/local/bin/$tool"
done
ln -sf /bin/busybox /bin/ash
