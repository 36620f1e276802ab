#!/usr/bin/env bash
# What `make test` needs beyond cargo, installed with apt-get when it is missing: Debian's
# tomcat10 (the tests against real Tomcat), chromium and chromium-driver (the status page's
# browser test), logrotate (the packaging test), haproxy (a PROXY protocol sender in front of
# pounce), and the openssl, curl and ss commands the TLS and connection tests run. Without them those tests would only say SKIPPED (and fail in CI).
#   scripts/test-deps.sh            install what is missing (as root, or through sudo)
#   scripts/test-deps.sh --check    only list what is missing; exit 1 if anything is
set -euo pipefail

need=()
[ -x "${CATALINA_HOME:-/usr/share/tomcat10}/bin/catalina.sh" ] || need+=(tomcat10)
[ -x "${CHROMIUM:-/usr/bin/chromium}" ] || need+=(chromium)
[ -x "${CHROMEDRIVER:-/usr/bin/chromedriver}" ] || need+=(chromium-driver)
command -v python3 >/dev/null || need+=(python3)
{ command -v logrotate >/dev/null || [ -x /usr/sbin/logrotate ]; } || need+=(logrotate)
{ command -v haproxy >/dev/null || [ -x /usr/sbin/haproxy ]; } || need+=(haproxy)
command -v openssl >/dev/null || need+=(openssl)
command -v curl >/dev/null || need+=(curl)
{ command -v ss >/dev/null || [ -x /usr/bin/ss ] || [ -x /usr/sbin/ss ]; } || need+=(iproute2)

if [ ${#need[@]} -eq 0 ]; then
    exit 0
fi
if [ "${1:-}" = "--check" ]; then
    echo "test-deps.sh: missing: ${need[*]}" >&2
    exit 1
fi
if ! command -v apt-get >/dev/null; then
    echo "test-deps.sh: missing ${need[*]} and no apt-get to install them; install them, then run make test" >&2
    exit 1
fi
sudo=()
if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null || { echo "test-deps.sh: installing ${need[*]} needs root (or sudo)" >&2; exit 1; }
    sudo=(sudo)
fi
echo "test-deps.sh: installing ${need[*]} (apt-get)" >&2
if [ -z "${APT_UPDATED:-}" ]; then "${sudo[@]}" apt-get update -qq >/dev/null; fi
"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
