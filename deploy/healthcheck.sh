#!/bin/bash
# Container health check: GET /healthz on ringmaster's metrics listener
# (RINGMASTER_METRICS, HOST:PORT; a wildcard host is asked on loopback).
# Exits 0 on a 200, 1 otherwise. bash's /dev/tcp only: the runtime image
# carries no HTTP client.
#   ringmaster-healthcheck [PATH]   (default /healthz)
set -u
path=${1:-/healthz}
addr=${RINGMASTER_METRICS:-127.0.0.1:9100}
port=${addr##*:}
host=${addr%:*}
host=${host#[}
host=${host%]}
case $host in "" | 0.0.0.0 | "*") host=127.0.0.1 ;; ::) host=::1 ;; esac
exec 3<>"/dev/tcp/$host/$port" || exit 1
printf 'GET %s HTTP/1.0\r\nHost: %s\r\n\r\n' "$path" "$host" >&3
read -r -t 5 proto status _ <&3 || exit 1
[[ $proto == HTTP/1.* && $status == 200 ]]
