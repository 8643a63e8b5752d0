#!/bin/sh
# anomalyd as packaged: the zipapp, run by Debian's Python 3.11 (the C extensions inside
# are built for it). exec, so that under systemd gunicorn's master is the main PID.
exec /usr/bin/python3.11 /usr/lib/anomalyd/anomalyd.pyz "$@"
