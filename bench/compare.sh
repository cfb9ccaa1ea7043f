#!/usr/bin/env bash
# Side-by-side benchmark: bulwark vs a private Postfix instance on this machine.
# Installs postfix (for smtp-source/smtp-sink and the comparison) when missing.
# Usage: bench/compare.sh   (BENCH_MESSAGES, BENCH_SESSIONS to change the load; BENCH_IDLE:
# IMAP IDLE connections held for the memory figure, default 5000; BENCH_ONLY_SMTP=1: stop
# after the SMTP comparison)
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh test
if ! command -v smtp-source >/dev/null; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postfix >/dev/null
fi
cmake -S . -B build-rel -DCMAKE_BUILD_TYPE=Release -DBUILD_TESTING=OFF -DBULWARK_BENCH=ON >/dev/null
cmake --build build-rel -j"$(nproc)" --target bulwark dkim_bench >/dev/null
root=${BENCH_ROOT:-/tmp/bulwark-bench}
bw_port=12525 pf_port=12526 sink_port=12527

# The SMTP comparison with both servers' data under $1 (so on its filesystem); $2 = idle:
# also the IMAP IDLE memory figure while bulwark runs.
smtp_compare() {
  local dir=$1
  export BENCH_ROOT=$dir
  rm -rf "$dir" && mkdir -p "$dir/bulwark"
  cat > "$dir/bulwark/bulwark.toml" <<EOC
[server]
hostname = "bench-bulwark.local"
data_dir = "data"
log_dir = "log"
user = ""
[[listener]]
service = "smtp"
address = "127.0.0.1"
port = $bw_port
[limits]
# Postfix's anvil allows 50 concurrent connections per client by default; the load
# generator's 20 sessions reconnect faster than a slot frees, so use the same 50.
max_connections_per_ip = 50
EOC
  local B=(./build-rel/bulwark --config "$dir/bulwark/bulwark.toml")
  "${B[@]}" domain add bench.test >/dev/null
  echo 'Bench-Passw0rd-1' | "${B[@]}" user add u@bench.test --password-stdin >/dev/null
  "${B[@]}" alias add postmaster@bench.test u@bench.test >/dev/null
  "${B[@]}" serve 2>"$dir/bulwark/serve.log" &
  bw_pid=$!
  bench/postfix_instance.sh start "$dir/postfix" "$pf_port"
  smtp-sink -u postfix "127.0.0.1:$sink_port" 1024 &
  sink_pid=$!
  trap cleanup EXIT
  for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/$bw_port) 2>/dev/null && break; sleep 0.1; done
  /usr/bin/python3 bench/compare.py "$bw_port" "$pf_port" "$bw_pid" "$sink_port"
  if [ "${2:-}" = idle ]; then
    echo
    /usr/bin/python3 bench/idle_connections.py "$bw_pid" "$bw_port"
  fi
  cleanup
  trap - EXIT
}
cleanup() {
  kill "${bw_pid:-}" "${sink_pid:-}" 2>/dev/null || true
  wait "${bw_pid:-}" "${sink_pid:-}" 2>/dev/null || true
  bench/postfix_instance.sh stop "$BENCH_ROOT/postfix"
}

# Every real spool is on a journaled filesystem; this workplace's root filesystem is
# ext4 without a journal (bench/journaled_fs.sh says why that matters). As root the
# comparison runs on a fresh journaled ext4 first, then on $root's filesystem.
jfs=${root}-journaled
if [ "$(id -u)" = 0 ] && bench/journaled_fs.sh mount "$jfs" >/dev/null 2>&1; then
  echo "== SMTP on a journaled ext4 (loop-mounted image at $jfs) =="
  smtp_compare "$jfs/bench"
  bench/journaled_fs.sh umount "$jfs"
  echo
else
  echo "(not root, or no loop device: no journaled filesystem mounted; the SMTP comparison runs on $root's only)"
fi
echo "== SMTP on $root's filesystem ($(findmnt -n -o FSTYPE -T "$(dirname "$root")")) =="
smtp_compare "$root" idle
echo
[ "${BENCH_ONLY_SMTP:-0}" = 1 ] && exit 0
/usr/bin/python3 bench/policy_cost.py "$PWD/build-rel/bulwark" "$root/policy"
echo
/usr/bin/python3 bench/mailauth_cost.py "$PWD/build-rel/bulwark" "$root/mailauth"
echo
echo "== DKIM per core (items/s = messages/s) =="
./build-rel/dkim_bench --benchmark_min_time=0.5
echo
/usr/bin/python3 bench/flood.py "$PWD/build-rel/bulwark" "$root"
echo
/usr/bin/python3 bench/auth_bench.py "$PWD/build-rel/bulwark" "$root/auth"
echo
/usr/bin/python3 bench/outbound.py "$PWD/build-rel/bulwark" "$root/outbound"
echo
echo "== POP3: bulwark vs Dovecot (dovecot-pop3d) =="
/usr/bin/python3 bench/pop3_compare.py --bin "$PWD/build-rel/bulwark"
echo
echo "== IMAP: bulwark vs Dovecot (dovecot-imapd) =="
/usr/bin/python3 bench/imap_compare.py --bin "$PWD/build-rel/bulwark" --idle "${BENCH_IDLE:-5000}"
