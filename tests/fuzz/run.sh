#!/usr/bin/env bash
# Builds the libFuzzer target with clang (ASan + UBSan) and runs it for $1 seconds.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
src="$here/../../src"
out=${FUZZ_BUILD_DIR:-$(mktemp -d)}
secs=${1:-30}
clang++ -std=c++20 -O1 -g -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined -I"$src" \
  "$here/smtp_fuzz.cpp" "$src/core/address.cpp" "$src/core/units.cpp" "$src/core/body.cpp" "$src/smtp/reply.cpp" \
  "$src/smtp/message_sink.cpp" "$src/smtp/session.cpp" "$src/smtp/session_auth.cpp" "$src/smtp/client.cpp" "$src/delivery/pop3_login.cpp" "$src/auth/password.cpp" \
  "$src/auth/sasl.cpp" -lcrypto -lsodium -o "$out/smtp_fuzz"
work=$(mktemp -d)
cp "$here"/corpus/* "$work"/
"$out/smtp_fuzz" -max_total_time="$secs" -max_len=8192 -timeout=10 -print_final_stats=1 "$work" 2>&1 | tail -n 15
rm -rf "$work"
