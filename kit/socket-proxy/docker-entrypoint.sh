#!/bin/sh
# The stand-in's entrypoint, shaped like upstream's (Tecnativa/docker-socket-proxy
# docker-entrypoint.sh, v0.4.1 and master a6fbf38): a command that starts with
# `haproxy` runs in the foreground in master-worker mode (-W -db), anything
# else runs as given. So a service may replace the command with
# `haproxy -f <its own config>`, as the monitoring stack's cadvisor-proxy does.
set -e
if [ "$1" = haproxy ]; then
  shift
  set -- haproxy -W -db "$@"
fi
exec "$@"
