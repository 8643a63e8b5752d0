"""The ``access_log`` setting: gunicorn's access log, ``-`` meaning standard error.

gunicorn writes an access log named ``-`` to standard output; anomalyd logs everything
else to standard error, so ``-`` goes there too (under systemd both reach the journal).
The format is gunicorn's default with the request time appended, in seconds: the time
from the request fully received to the response sent.
"""

from __future__ import annotations

import logging
import sys

from gunicorn.glogging import Logger

FORMAT = '%(h)s %(l)s %(u)s %(t)s "%(r)s" %(s)s %(b)s "%(f)s" "%(a)s" %(L)s'


class AccessLogger(Logger):
    def setup(self, cfg) -> None:
        super().setup(cfg)
        if cfg.accesslog == "-":
            self._set_handler(
                self.access_log,
                cfg.accesslog,
                fmt=logging.Formatter(self.access_fmt),
                stream=sys.stderr,
            )


def options(access_log: str | None) -> dict:
    """gunicorn options for the setting (None: no access log)."""
    return {
        "accesslog": access_log,
        "access_log_format": FORMAT,
        "logger_class": "anomalyd.access_log.AccessLogger",
    }
