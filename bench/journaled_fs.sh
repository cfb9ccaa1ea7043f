#!/usr/bin/env bash
# A fresh journaled ext4 for the benchmarks' data: an image file, loop-mounted at DIR.
# Why: this workplace's root filesystem is ext4 without a journal, and there ext4
# skips every inode freed in the last minute when it allocates one, reading each from
# the inode table (fs/ext4/ialloc.c, recently_deleted) -- with a spool creating and
# deleting thousands of files a second that scan took a third of the server's CPU
# time in `perf` and swung acceptance runs by +-40%. A mail server's spool lives on
# a journaled filesystem. Needs root (mount).
#   bench/journaled_fs.sh mount DIR [SIZE]   image DIR.img, default 4G; then e.g.
#       bench/mailauth_cost.py build-rel/bulwark DIR/mailauth
#   bench/journaled_fs.sh umount DIR         unmounts and removes the image
set -euo pipefail
cmd=${1:-} dir=${2:-}
[ -n "$cmd" ] && [ -n "$dir" ] || { echo "usage: $0 mount|umount DIR [SIZE]" >&2; exit 2; }
case $cmd in
  mount)
    mkdir -p "$dir"
    if mountpoint -q "$dir"; then echo "$dir is mounted already" >&2; exit 1; fi
    rm -f "$dir.img"
    truncate -s "${3:-4G}" "$dir.img"
    mkfs.ext4 -q -F "$dir.img"
    mount -o loop "$dir.img" "$dir"
    echo "journaled ext4 at $dir ($(findmnt -n -o SOURCE "$dir"))"
    ;;
  umount)
    umount "$dir"
    rm -f "$dir.img"
    ;;
  *) echo "usage: $0 mount|umount DIR [SIZE]" >&2; exit 2 ;;
esac
