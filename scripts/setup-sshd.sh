#!/usr/bin/env bash
# Starts a private sshd on 127.0.0.1:2222 for the SSH tests (test/integration/ssh-host.test.ts),
# with a generated client key. Idempotent: generates keys and config once, starts sshd only
# if nothing listens on 127.0.0.1:2222 yet, then checks that the test key logs in as root.
# A second run takes well under a second. Progress goes to stderr; nothing is printed on stdout.
#
# Everything lives in $HOME/.cache/understudy/ssh (mode 700):
#   id_ed25519, id_ed25519.pub   client test key (authorized for root on this sshd only)
#   ssh_host_ed25519_key[.pub]   the sshd host key
#   host_key.pub                 copy of the host public key (`ssh-ed25519 AAAA...`, for hostKey checks)
#   known_hosts                  `[127.0.0.1]:2222 ssh-ed25519 AAAA...` (for the ssh check below)
#   authorized_keys              the test public key
#   sshd_config, sshd.pid, sshd.log
set -euo pipefail

say() { printf '[setup-sshd] %s\n' "$*" >&2; }
die() { printf '[setup-sshd] ERROR: %s\n' "$*" >&2; exit 1; }

addr=127.0.0.1
port=${UNDERSTUDY_SSH_PORT:-2222} # another port only for a second machine-in-a-chroot (scripts/fresh-machine.sh)
dir="$HOME/.cache/understudy/ssh"
sshd=/usr/sbin/sshd

[ "$(id -u)" = 0 ] || die "run as root: the SSH tests log in as root and switch to the postgres user"
[ -x "$sshd" ] || die "$sshd not found: apt-get install -y openssh-server (scripts/setup.sh does it)"
for tool in ssh ssh-keygen ss; do
  command -v "$tool" >/dev/null || die "'$tool' not found: apt-get install -y openssh-client openssh-server iproute2"
done

# With UsePAM no, sshd refuses every login (keys included) to an account whose password
# field starts with '!' (locked). '*' (no password) is fine.
if awk -F: '$1 == "root" && $2 ~ /^!/ { found = 1 } END { exit !found }' /etc/shadow 2>/dev/null; then
  die "the root account is locked ('!' in /etc/shadow), so sshd (UsePAM no) refuses key logins too; run \`usermod -p '*' root\` (keeps password login impossible) and run this script again"
fi

mkdir -p "$dir"
chmod 700 "$dir"
# StrictModes (on by default) makes sshd ignore authorized_keys unless the file and every
# directory above it (up to root's home directory, or /) are owned by root and not
# writable by group or others. Say so now rather than as a refused key later.
root_home=$(getent passwd root | cut -d: -f6)
d=$dir
while :; do
  read -r owner mode < <(stat -c '%u %a' "$d")
  if [ "$owner" != 0 ] || (( 8#$mode & 8#022 )); then
    die "$d (owner uid $owner, mode $mode) must be owned by root and not group/world-writable for sshd's StrictModes to accept $dir/authorized_keys; fix it or use a HOME whose .cache is private"
  fi
  { [ "$d" = "$root_home" ] || [ "$d" = / ]; } && break
  d=$(dirname "$d")
done
cd "$dir"

# Two concurrent runs (e.g. two test sessions) must not both start an sshd.
exec 9>"$dir/.lock"
flock 9

if [ ! -s id_ed25519 ] || [ ! -s id_ed25519.pub ]; then
  say "generating the client test key $dir/id_ed25519"
  rm -f id_ed25519 id_ed25519.pub
  ssh-keygen -q -t ed25519 -N '' -C "understudy-test" -f id_ed25519 >&2
fi
if [ ! -s ssh_host_ed25519_key ] || [ ! -s ssh_host_ed25519_key.pub ]; then
  say "generating the sshd host key"
  rm -f ssh_host_ed25519_key ssh_host_ed25519_key.pub
  ssh-keygen -q -t ed25519 -N '' -C "understudy-test-host" -f ssh_host_ed25519_key >&2
fi
chmod 600 id_ed25519 ssh_host_ed25519_key

# Write a file only when its content changes (keeps mtimes stable; tells us whether to reload).
changed=0
put() { # put <file> <mode> <content>
  if [ ! -f "$1" ] || [ "$(cat "$1")" != "$3" ]; then
    printf '%s\n' "$3" >"$1.tmp" && chmod "$2" "$1.tmp" && mv -f "$1.tmp" "$1"
    changed=1
  fi
  chmod "$2" "$1"
}

# The non-root test login: `understudy-ci`, key login with the test key, `sudo -n` for all.
ci_user=understudy-ci
if ! id -u "$ci_user" >/dev/null 2>&1; then
  say "creating the non-root test user $ci_user (key login, passwordless sudo)"
  useradd -m -s /bin/bash "$ci_user" >&2
fi
# No password, but not "locked" ("!"): with UsePAM no, sshd refuses a locked account's key login.
[ "$(getent shadow "$ci_user" | cut -d: -f2)" = "*" ] || usermod -p '*' "$ci_user"
install -d -m 700 -o "$ci_user" -g "$ci_user" "/home/$ci_user/.ssh"
install -m 600 -o "$ci_user" -g "$ci_user" id_ed25519.pub "/home/$ci_user/.ssh/authorized_keys"
sudoers="/etc/sudoers.d/$ci_user"
if [ "$(cat "$sudoers" 2>/dev/null)" != "$ci_user ALL=(ALL) NOPASSWD: ALL" ]; then
  printf '%s\n' "$ci_user ALL=(ALL) NOPASSWD: ALL" > "$sudoers.tmp"
  chmod 440 "$sudoers.tmp"
  visudo -cqf "$sudoers.tmp" || die "visudo rejects $sudoers.tmp"
  mv -f "$sudoers.tmp" "$sudoers"
fi

host_pub=$(cat ssh_host_ed25519_key.pub)
put authorized_keys 600 "$(cat id_ed25519.pub)"
put host_key.pub 644 "$host_pub"
put known_hosts 644 "[$addr]:$port $host_pub"
put sshd_config 600 "# Test sshd for Understudy, written by scripts/setup-sshd.sh. Loopback only.
ListenAddress $addr
Port $port
HostKey $dir/ssh_host_ed25519_key
PidFile $dir/sshd.pid
AuthorizedKeysFile $dir/authorized_keys
StrictModes yes
PermitRootLogin prohibit-password
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
AllowTcpForwarding yes
X11Forwarding no
PrintMotd no
PermitUserEnvironment no
# The tests open many connections at once (failed-auth tests included).
MaxStartups 50:30:100
MaxSessions 50
# A non-root login with passwordless sudo, as many production hosts are reached. Its key
# file lives in its own home: sshd reads it as that user, who cannot read $dir.
Match User $ci_user
  AuthorizedKeysFile /home/$ci_user/.ssh/authorized_keys"

# The privilege-separation directory lives on tmpfs: gone after a reboot.
[ -d /run/sshd ] || { mkdir -p /run/sshd; chmod 755 /run/sshd; }

listening() { ss -Hltn "sport = :$port" 2>/dev/null | awk '{print $4}' | grep -qx "$addr:$port"; }
our_pid() { # pid of the sshd started from our config, if it runs
  local pid
  pid=$(cat sshd.pid 2>/dev/null) || return 1
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null && tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF "$dir/sshd_config"
}

if listening; then
  if [ "$changed" = 1 ] && pid=$(cat sshd.pid 2>/dev/null) && our_pid; then
    say "configuration changed: reloading sshd (pid $pid)"
    err=$("$sshd" -t -f "$dir/sshd_config" 2>&1) || die "sshd rejects $dir/sshd_config: $err"
    kill -HUP "$pid"
    sleep 0.3 # sshd closes its socket and re-executes itself on SIGHUP
    for _ in $(seq 1 50); do listening && break; sleep 0.1; done
  fi
else
  say "starting $sshd on $addr:$port"
  err=$("$sshd" -t -f "$dir/sshd_config" 2>&1) || die "sshd rejects $dir/sshd_config: $err"
  [ -f sshd.log ] && mv -f sshd.log sshd.log.old # one daemon's log per file (sshd -E appends)
  # sshd daemonizes (its stdio goes to /dev/null), so it never holds the caller's pipes.
  # Without our lock's fd 9: a daemon holding it would make the next setup wait forever.
  "$sshd" -f "$dir/sshd_config" -E "$dir/sshd.log" >&2 9>&- || die "sshd did not start; see $dir/sshd.log"
  for _ in $(seq 1 50); do listening && break; sleep 0.1; done
  listening || die "sshd started but nothing listens on $addr:$port; see $dir/sshd.log"
fi

# Log in with the test key. The known_hosts file pins our host key, so a different server
# left on port 2222 (another sshd, another program) is reported instead of silently used.
if ! out=$(ssh -i "$dir/id_ed25519" -p "$port" \
  -o BatchMode=yes -o IdentitiesOnly=yes -o ConnectTimeout=5 \
  -o StrictHostKeyChecking=yes -o UserKnownHostsFile="$dir/known_hosts" -o GlobalKnownHostsFile=/dev/null \
  -o LogLevel=ERROR root@"$addr" true 2>&1 </dev/null); then
  why=$(printf '%s\n' "$out" | grep -v '^[@ ]*$' | tail -n 3 | sed 's/^/    /')
  holder=$(ss -Hltnp "sport = :$port" 2>/dev/null | grep -o 'pid=[0-9]*' | head -1 | cut -d= -f2 || true)
  if our_pid; then
    die "sshd (pid $(cat sshd.pid), config $dir/sshd_config) runs but root cannot log in with $dir/id_ed25519:
$why
  See $dir/sshd.log. For a clean start: kill $(cat sshd.pid); rm -rf $dir; bash scripts/setup-sshd.sh"
  elif [ -n "$holder" ]; then
    die "port $addr:$port is held by another process, not by the sshd of this setup:
    pid $holder: $(tr '\0' ' ' <"/proc/$holder/cmdline" 2>/dev/null)
$why
  Stop it (if it is an sshd left by an older setup: kill $holder) and run scripts/setup-sshd.sh again."
  else
    die "cannot log in with $dir/id_ed25519 to root@$addr:$port:
$why
  See $dir/sshd.log, then run scripts/setup-sshd.sh again."
  fi
fi
# The non-root login and its sudo, as the tests use them.
if ! out=$(ssh -i "$dir/id_ed25519" -p "$port" \
  -o BatchMode=yes -o IdentitiesOnly=yes -o ConnectTimeout=5 \
  -o StrictHostKeyChecking=yes -o UserKnownHostsFile="$dir/known_hosts" -o GlobalKnownHostsFile=/dev/null \
  -o LogLevel=ERROR "$ci_user@$addr" sudo -n true 2>&1 </dev/null); then
  die "the non-root user $ci_user cannot log in to $addr:$port and run sudo -n with $dir/id_ed25519:
$(printf '%s\n' "$out" | tail -n 3 | sed 's/^/    /')
  Check /home/$ci_user/.ssh/authorized_keys, $sudoers and $dir/sshd.log."
fi
say "sshd ready on $addr:$port (key $dir/id_ed25519; users root and $ci_user)"
