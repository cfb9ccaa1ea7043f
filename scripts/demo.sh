#!/usr/bin/env bash
# Builds bulwark and starts it on the demo configuration (demo/bulwark.toml):
# 127.0.0.1, SMTP 2525, submission 5870, SMTPS 4650, POP3 1100, POP3S 9950, IMAP 1430, IMAPS 9930,
# admin HTTPS 4040, domain example.test, user demo@example.test, administrator admin,
# data and logs under demo/. Ctrl-C stops it.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh build
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo -DBUILD_TESTING=OFF -DBULWARK_SANITIZE=OFF >/dev/null
cmake --build build -j"$(nproc)" --target bulwark
B=(./build/bulwark --config demo/bulwark.toml)
"${B[@]}" check-config
if ! "${B[@]}" domain list | grep -qx example.test; then
  "${B[@]}" domain add example.test
fi
pwfile=demo/data/demo-password
if ! "${B[@]}" user list | grep -qx demo@example.test; then
  umask 077
  pw="Pw-$(od -An -N9 -tx1 /dev/urandom | tr -d ' \n')"  # passes [password_policy]
  printf '%s\n' "$pw" | "${B[@]}" user add demo@example.test --password-stdin
  printf '%s\n' "$pw" > "$pwfile"
fi
adminpw=demo/data/admin-password
if ! "${B[@]}" admin list | grep -q '^admin '; then
  umask 077
  pw="Ad-$(od -An -N9 -tx1 /dev/urandom | tr -d ' \n')"
  printf '%s\n' "$pw" | "${B[@]}" admin add admin --password-stdin
  printf '%s\n' "$pw" > "$adminpw"
fi
if ! "${B[@]}" alias list | grep -q '^postmaster@example.test '; then
  "${B[@]}" alias add postmaster@example.test demo@example.test  # RFC 5321 4.5.1
fi
cat <<EOT

  bulwark demo: SMTP 127.0.0.1:2525 (STARTTLS), submission 127.0.0.1:5870, SMTPS 127.0.0.1:4650
                POP3 127.0.0.1:1100 (STLS), POP3S 127.0.0.1:9950
                IMAP 127.0.0.1:1430 (STARTTLS), IMAPS 127.0.0.1:9930
                admin API https://127.0.0.1:4040/api/v1/ (self-signed certificate)
  demo user:    demo@example.test   password: $(cat "$pwfile" 2>/dev/null || echo '(see demo/data/demo-password)')
  administrator: admin       password: $(cat "$adminpw" 2>/dev/null || echo '(see demo/data/admin-password)')
  mailbox:      demo/data/mail/example.test/demo/new/
  logs:         demo/log/mail.log, demo/log/security.log

EOT
exec "${B[@]}" serve
