#!/usr/bin/env bash
# Sets up and starts a private Postfix instance for side-by-side benchmarks:
#   postfix_instance.sh start DIR PORT   -> Postfix on 127.0.0.1:PORT, delivering
#                                           u@bench.test to DIR/mail/u/ (Maildir)
#   postfix_instance.sh stop DIR
# Uses Debian's postfix package; touches nothing in /etc/postfix.
set -euo pipefail
cmd=$1 dir=$(realpath -m "$2")
if [ "$cmd" = stop ]; then
  postfix -c "$dir/etc" stop >/dev/null 2>&1 || true
  exit 0
fi
port=$3
rm -rf "$dir"
mkdir -p "$dir/etc" "$dir/queue" "$dir/data" "$dir/mail"
chown postfix "$dir/data"
chown -R postfix:postfix "$dir/mail"
cp /etc/postfix/master.cf "$dir/etc/master.cf"
# no chroot (the private queue dir has no chroot tree), smtpd on our port only
awk -v port="$port" '
  /^smtp +inet/ { print "127.0.0.1:" port " inet n - n - - smtpd"; next }
  /^[a-z]/ && NF >= 8 { $5 = "n" }
  { print }' /etc/postfix/master.cf > "$dir/etc/master.cf"
uid=$(id -u postfix) gid=$(id -g postfix)
cat > "$dir/etc/main.cf" <<EOC
compatibility_level = 3.6
queue_directory = $dir/queue
data_directory = $dir/data
command_directory = /usr/sbin
daemon_directory = /usr/lib/postfix/sbin
meta_directory = /etc/postfix
shlib_directory = /usr/lib/postfix
mail_owner = postfix
setgid_group = postdrop
myhostname = bench-postfix.local
mydestination =
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
virtual_mailbox_domains = bench.test
virtual_mailbox_base = $dir/mail
virtual_mailbox_maps = inline:{ u@bench.test=u/ }
virtual_uid_maps = static:$uid
virtual_gid_maps = static:$gid
smtpd_recipient_restrictions = reject_unauth_destination
smtpd_client_connection_count_limit = 0
smtpd_client_message_rate_limit = 0
default_process_limit = 200
smtputf8_enable = yes
maillog_file = $dir/maillog
maillog_file_prefixes = $dir
EOC
grep -q '^postlog' "$dir/etc/master.cf" || echo 'postlog unix-dgram n - n - 1 postlogd' >> "$dir/etc/master.cf"
# Postfix accepts -c only for directories the default instance lists.
if ! postconf -h alternate_config_directories | tr ', ' '\n\n' | grep -qx "$dir/etc"; then
  postconf -e "alternate_config_directories = $(postconf -h alternate_config_directories) $dir/etc"
fi
postfix -c "$dir/etc" check
postfix -c "$dir/etc" start >/dev/null
for _ in $(seq 100); do
  (exec 3<>/dev/tcp/127.0.0.1/"$port") 2>/dev/null && exit 0
  sleep 0.1
done
echo "postfix did not start on port $port" >&2
exit 1
