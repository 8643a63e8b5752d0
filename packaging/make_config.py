"""Write the commented /etc/anomalyd/anomalyd.toml shipped in the .deb.

Generated from ``Settings`` and ``HELP`` so the file lists every setting with its default
and never drifts from the code. Every line is a comment: an untouched file changes nothing.
"""

from __future__ import annotations

import sys

from anomalyd.settings import HELP, Settings, env_name
from anomalyd.settings import toml_value as settings_toml_value

HEADER = """\
# anomalyd settings (TOML). Read by `anomalyd serve --config /etc/anomalyd/anomalyd.toml`.
#
# Every setting is shown commented out, with its default. Precedence, lowest first:
# defaults < this file < ANOMALYD_* environment variables < command-line flags.
# Under systemd, data_dir defaults to $STATE_DIRECTORY (/var/lib/anomalyd).
# Apply changes with `systemctl restart anomalyd`; check them with
# `anomalyd check-config --config /etc/anomalyd/anomalyd.toml`.
#
# The access token: put it in /etc/anomalyd/credentials/api_token (root's, mode 600);
# the unit hands it to the service as a systemd credential, which sets api_token_file.
# The service's dynamic uid cannot read a root-only api_token_file named here.
"""

# Shown instead of the default where the default says nothing useful on a packaged host.
EXAMPLES = {
    "data_dir": "/var/lib/anomalyd",
    "api_token": "a-long-random-secret",
    "api_token_file": "/srv/anomalyd/api_token",
    "alertmanager_url": ("http://127.0.0.1:9093",),
    "webhook_url": ("https://hooks.example.com/anomalyd",),
    "webhook_secret_file": "/srv/anomalyd/webhook_secret",
    "public_url": "https://anomalyd.example.com",
}


def toml_value(value: object) -> str:
    if isinstance(value, tuple):  # a list setting: a TOML array
        return settings_toml_value(value)
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return str(value)


def render() -> str:
    defaults = Settings()
    lines = [HEADER]
    for field in Settings.__struct_fields__:
        value = EXAMPLES.get(field, getattr(defaults, field))
        if value is None:
            value = ""
        lines.append(f"# {HELP[field]} (env {env_name(field)})")
        if getattr(defaults, field) is None:
            lines.append("# (unset by default)")
        lines.append(f"#{field} = {toml_value(value)}")
        lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.stdout.write(render())
