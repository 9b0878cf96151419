"""The code of every warning `synsup check` gives: shown as `[code]` after the message, in
`--json` as `code`, and what `--ignore CODE` silences. Codes are stable: never reuse one."""

from __future__ import annotations

WARNING_CODES = {
    "conf-d": "a conf.d directory beside a config file is not read (not given with -c)",
    "deprecated-app": "a legacy or deprecated worker_app",
    "exposed-replication": "a replication listener off loopback without worker_replication_secret",
    "media-on-main": "a media repository worker while main still serves media (enable_media_repo)",
    "metrics-no-listener": "enable_metrics on a process without a metrics listener",
    "metrics-not-enabled": "a metrics listener on a process without enable_metrics",
    "no-replication-secret": "processes replicate over the network without worker_replication_secret",
    "unused-key": "a key synsup makes unnecessary (pid_file, worker_main_http_uri, ...)",
    "yml-file": "a *.yml file in the worker directory (only *.yaml files are read)",
}
