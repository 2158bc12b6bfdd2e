#!/bin/sh
# Install the Alpine look-alikes into a Debian image: apk, adduser/addgroup,
# and /bin/ash (busybox) for Dockerfiles that set SHELL to it.
set -eu
here="$(dirname "$0")"
install -m 0755 "$here/apk" /usr/local/sbin/apk
install -m 0755 "$here/adduser" /usr/local/sbin/adduser
install -m 0755 "$here/addgroup" /usr/local/sbin/addgroup
ln -sf /bin/busybox /bin/ash
