#!/usr/bin/env bash
# Builds a libFuzzer target with clang (ASan + UBSan) and runs it for $1 seconds.
#   run.sh SECONDS [smtp|pop3|imap|http]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
src="$here/../../src"
out=${FUZZ_BUILD_DIR:-$(mktemp -d)}
secs=${1:-30}
target=${2:-smtp}
extra_libs=()
auth=("$src/auth/password.cpp" "$src/auth/sasl.cpp")
case "$target" in
  smtp)
    sources=("$here/smtp_fuzz.cpp" "$src/core/address.cpp" "$src/core/units.cpp" "$src/core/body.cpp"
             "$src/smtp/reply.cpp" "$src/smtp/message_sink.cpp" "$src/smtp/session.cpp" "$src/smtp/session_auth.cpp"
             "$src/smtp/client.cpp" "$src/delivery/pop3_login.cpp" "${auth[@]}")
    corpus="$here/corpus" ;;
  pop3)
    sources=("$here/pop3_fuzz.cpp" "$src/pop3/session.cpp" "${auth[@]}")
    corpus="$here/pop3_corpus" ;;
  imap)
    sources=("$here/imap_fuzz.cpp" "$src/imap/parser.cpp" "$src/imap/session.cpp" "$src/imap/selected.cpp" "$src/imap/folder_commands.cpp" "$src/imap/fetch.cpp" "$src/imap/search.cpp" "$src/imap/message_text.cpp" "$src/imap/mime.cpp" "$src/imap/mutf7.cpp" "$src/imap/search_text.cpp" "$src/imap/sort.cpp" "$src/imap/sort_keys.cpp"
             "$src/core/address.cpp" "$src/core/units.cpp" "${auth[@]}")
    extra_libs=(-lunistring)
    corpus="$here/imap_corpus" ;;
  http)
    sources=("$here/http_fuzz.cpp" "$src/http/http.cpp")
    extra_libs=(-lhttp_parser)
    corpus="$here/http_corpus" ;;
  *) echo "unknown fuzz target: $target" >&2; exit 2 ;;
esac
clang++ -std=c++20 -O1 -g -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined -I"$src" \
  "${sources[@]}" -lcrypto -lsodium ${extra_libs[@]+"${extra_libs[@]}"} -o "$out/${target}_fuzz"
work=$(mktemp -d)
cp "$corpus"/* "$work"/
"$out/${target}_fuzz" -max_total_time="$secs" -max_len=8192 -timeout=10 -print_final_stats=1 "$work" 2>&1 | tail -n 15
rm -rf "$work"
