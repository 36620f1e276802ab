#!/usr/bin/env bash
# What `make test` needs besides Tomcat (scripts/tomcat.sh install): logrotate, for the
# packaging test (tests/packaging.rs). Installed with apt-get when missing.
set -euo pipefail
if ! command -v logrotate >/dev/null && [ ! -x /usr/sbin/logrotate ]; then
    echo "test-deps.sh: installing logrotate (apt-get)" >&2
    if [ -z "${APT_UPDATED:-}" ]; then apt-get update -qq >/dev/null; fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq logrotate >/dev/null
fi
