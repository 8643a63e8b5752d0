#!/bin/sh
# What `make bench` needs beyond the venv: wrk (load generator for the ceilings) and
# nginx (the machine's HTTP ceiling), from Debian. Installed when missing and root.
set -eu
PATH="$PATH:/usr/sbin:/sbin"
missing=""
command -v wrk >/dev/null 2>&1 || missing="$missing wrk"
command -v nginx >/dev/null 2>&1 || missing="$missing nginx-light"
[ -z "$missing" ] && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "bench: installing$missing (apt-get)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # shellcheck disable=SC2086
  apt-get install -y -qq --no-install-recommends $missing >/dev/null
else
  echo "bench: please install$missing (Debian: sudo apt-get install$missing)" >&2
  exit 1
fi
