#!/bin/sh
# The DOCKER_HOST rule of the official image's docker-entrypoint.sh: with no
# DOCKER_HOST and a service reachable as `docker` (the docker:dind service),
# talk to it: TLS on 2376 when DOCKER_TLS_CERTDIR holds client certificates
# (the runner shares /certs/client with the service), plain 2375 otherwise.
set -eu
if [ -z "${DOCKER_HOST:-}" ] && [ ! -S /var/run/docker.sock ] && getent hosts docker >/dev/null 2>&1; then
  if [ -n "${DOCKER_TLS_CERTDIR:-}" ] && [ -s "${DOCKER_TLS_CERTDIR}/client/ca.pem" ]; then
    export DOCKER_HOST=tcp://docker:2376 DOCKER_TLS_VERIFY=1 DOCKER_CERT_PATH="${DOCKER_TLS_CERTDIR}/client"
  else
    export DOCKER_HOST=tcp://docker:2375
  fi
fi
exec "$@"
