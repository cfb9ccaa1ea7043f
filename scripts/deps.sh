#!/usr/bin/env bash
# Installs the Debian packages bulwark needs to build and test, only when missing.
# Usage: scripts/deps.sh [build|test]   (test = build + test tools)
set -euo pipefail
want=(cmake g++ pkg-config libpq-dev libhiredis-dev libasio-dev libssl-dev libc-ares-dev libtomlplusplus-dev
      libspdlog-dev libfmt-dev libcli11-dev libsqlite3-dev libsodium-dev libhttp-parser-dev nlohmann-json3-dev openssl
      libunistring-dev zlib1g-dev)
if [ "${1:-build}" = test ]; then
  want+=(postgresql-15 redis-server libgtest-dev googletest python3-pytest python3-dnslib python3-aiosmtpd dovecot-pop3d dovecot-imapd fetchmail getmail6 isync postfix swaks python3-dkim python3-nacl python3-cryptography opendkim-tools python3-spf curl prometheus python3-prometheus-client chromium chromium-driver python3-selenium libbenchmark-dev libnet-ssleay-perl libio-socket-ssl-perl
        clang libclang-rt-14-dev
        php-cli php8.2-cgi roundcube-core roundcube-sqlite3)
fi
missing=()
for p in "${want[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
echo "installing: ${missing[*]}" >&2
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
# Roundcube (the webmail test) is served by `php -S` with its own SQLite database:
# no database set up by dbconfig, no web server configured (php8.2-cgi keeps apache out).
echo "roundcube-core roundcube/dbconfig-install boolean false" | $SUDO debconf-set-selections 2>/dev/null || true
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
