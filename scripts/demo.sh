#!/usr/bin/env bash
# Builds bulwark and starts it on the demo configuration: 127.0.0.1 only, domain
# example.test, user demo@example.test, administrator admin, data and logs under demo/.
#
# The tracked demo/bulwark.toml is the template; the server runs on its copy
# demo/run/bulwark.toml (ignored by git), made at the first start, so that settings
# saved from the console stay out of the checkout. Ports (listener order of the
# template): SMTP 2525, submission 5870, SMTPS 4650, POP3 1100, POP3S 9950, IMAP 1430,
# IMAPS 9930, admin HTTPS 4040. BULWARK_DEMO_PORT_BASE=N moves them to N, N+1, ... N+7
# in that order (written into demo/run/bulwark.toml). The ports are checked before the
# build. Ctrl-C stops the server.
set -euo pipefail
cd "$(dirname "$0")/.."
config=demo/run/bulwark.toml
mkdir -p demo/run
if [ ! -f "$config" ]; then
  # The same data and log directories as the template's (relative to the config file).
  sed -e 's|^data_dir = "data"|data_dir = "../data"|' -e 's|^log_dir  = "log"|log_dir  = "../log"|' \
    demo/bulwark.toml > "$config"
fi
if [ -n "${BULWARK_DEMO_PORT_BASE:-}" ]; then
  base=$BULWARK_DEMO_PORT_BASE
  if ! [[ "$base" =~ ^[0-9]+$ ]] || [ "$base" -lt 1024 ] || [ "$base" -gt 65528 ]; then
    echo "BULWARK_DEMO_PORT_BASE must be a number from 1024 to 65528 (got \"$base\")" >&2
    exit 1
  fi
  awk -v base="$base" '/^\[\[listener\]\]/ { n++ } /^port *=/ && n { sub(/=.*/, "= " (base + n - 1)) } { print }' \
    "$config" > "$config.new"
  mv "$config.new" "$config"
fi

# service port, one line per listener, as the config says.
listeners() {
  awk '/^\[\[listener\]\]/ { if (s) print s, p; s = ""; p = "" }
       /^service *=/ { s = $3; gsub(/"/, "", s) }
       /^port *=/ { p = $3 }
       END { if (s) print s, p }' "$config"
}
port_of() { listeners | awk -v s="$1" '$1 == s { print $2; exit }'; }

busy=0
while read -r service port; do
  if command -v ss >/dev/null; then
    holder=$(ss -Hltnp "sport = :$port" 2>/dev/null | grep -E "(127\.0\.0\.1|\*|0\.0\.0\.0|\[::\]):$port " | head -1 || true)
    if [ -n "$holder" ]; then
      proc=$(grep -o 'users:(([^)]*))' <<<"$holder" | sed -E 's/users:\(\("([^"]*)",pid=([0-9]+).*/\1 (pid \2)/')
      echo "port $port ($service) on 127.0.0.1 is taken by ${proc:-another process}" >&2
      busy=1
    fi
  elif (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    echo "port $port ($service) on 127.0.0.1 is taken by another process" >&2
    busy=1
  fi
done < <(listeners)
if [ "$busy" = 1 ]; then
  echo "Stop that process, or move the demo's ports: BULWARK_DEMO_PORT_BASE=30000 scripts/demo.sh" >&2
  exit 1
fi

scripts/deps.sh build
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo -DBUILD_TESTING=OFF -DBULWARK_SANITIZE=OFF >/dev/null
cmake --build build -j"$(nproc)" --target bulwark
B=(./build/bulwark --config "$config")
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

  bulwark demo: SMTP 127.0.0.1:$(port_of smtp) (STARTTLS), submission 127.0.0.1:$(port_of submission), SMTPS 127.0.0.1:$(port_of smtps)
                POP3 127.0.0.1:$(port_of pop3) (STLS), POP3S 127.0.0.1:$(port_of pop3s)
                IMAP 127.0.0.1:$(port_of imap) (STARTTLS), IMAPS 127.0.0.1:$(port_of imaps)
                admin console and API https://127.0.0.1:$(port_of admin)/ (self-signed certificate)
  demo user:    demo@example.test   password: $(cat "$pwfile" 2>/dev/null || echo '(see demo/data/demo-password)')
  administrator: admin       password: $(cat "$adminpw" 2>/dev/null || echo '(see demo/data/admin-password)')
  mailbox:      demo/data/mail/example.test/demo/new/
  logs:         demo/log/mail.log, demo/log/security.log
  config:       $config (the CLI: ./build/bulwark --config $config ...)

EOT
exec "${B[@]}" serve
