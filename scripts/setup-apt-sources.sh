#!/usr/bin/env bash
# Adds Debian's bullseye suite (PostgreSQL 13 is no longer in bookworm) from the mirror this
# machine already uses, pinned low so that bookworm stays the source of everything else,
# security updates included.
#
# The mirror is read from apt itself (`apt-get indextargets`): the enabled `deb` entries of
# deb822 `.sources` files and of legacy `.list` files alike, whatever their comments say.
# The entry chosen is the one serving `bookworm main` (not -security, not -updates).
#
# Paths come from the environment so that the tests can run this very step on sample layouts:
#   UNDERSTUDY_APT_SOURCE_LIST        (default /etc/apt/sources.list)
#   UNDERSTUDY_APT_SOURCE_PARTS       (default /etc/apt/sources.list.d)
#   UNDERSTUDY_APT_PREFERENCES_PARTS  (default /etc/apt/preferences.d)
# Exit status: 0 when bullseye is (now) configured, 1 with an explanation when no mirror is found.
set -euo pipefail
list=${UNDERSTUDY_APT_SOURCE_LIST:-/etc/apt/sources.list}
parts=${UNDERSTUDY_APT_SOURCE_PARTS:-/etc/apt/sources.list.d}
prefs=${UNDERSTUDY_APT_PREFERENCES_PARTS:-/etc/apt/preferences.d}
ours="$parts/understudy-bullseye.sources"
pin="$prefs/understudy-bullseye.pref"

# An empty lists directory and no cache files: apt answers from the sources alone (in a tenth
# of a second, instead of building its cache from the machine's downloaded lists) and the
# answer does not depend on what this machine downloaded before.
lists=$(mktemp -d)
trap 'rm -rf "$lists"' EXIT
mkdir -p "$lists/partial"

targets() {
  # One line per index apt would fetch: "<type> <uri> <suite> <component> <identifier>".
  apt-get -o "Dir::Etc::sourcelist=$list" -o "Dir::Etc::sourceparts=$parts" \
    -o "Dir::State::lists=$lists" -o Dir::Cache::pkgcache= -o Dir::Cache::srcpkgcache= \
    indextargets --no-release-info \
    --format '$(TARGET_OF) $(REPO_URI) $(RELEASE) $(COMPONENT) $(IDENTIFIER)' 2>/dev/null |
    sort -u
}

write_pin() {
  mkdir -p "$prefs"
  cat > "$pin" <<PIN
# Written by Understudy's setup: bullseye only for what bookworm lacks (postgresql-13).
Package: *
Pin: release n=bullseye
Pin-Priority: 100
PIN
}

all=$(targets || true)
# Our own file counts as "already configured" only if apt reads it.
if printf '%s\n' "$all" | awk '$1=="deb" && $3=="bullseye" && $4=="main"' | grep -q .; then
  [ -f "$pin" ] || write_pin
  echo "bullseye already configured"
  exit 0
fi

mirror=$(printf '%s\n' "$all" |
  awk '$1=="deb" && $3=="bookworm" && $4=="main" && $5=="Packages" {print $2; exit}')
if [ -z "$mirror" ]; then
  {
    echo "no Debian bookworm mirror found in apt's sources, so bullseye (for postgresql-13) cannot be added."
    echo "apt read: $list (exists: $([ -e "$list" ] && echo yes || echo no)) and $parts/*.list, $parts/*.sources"
    skipped=$(find "$parts" -maxdepth 1 -type f ! -name '*.list' ! -name '*.sources' 2>/dev/null | sort | tr '\n' ' ')
    if [ -n "$skipped" ]; then echo "apt ignores (wrong suffix): $skipped"; fi
    if [ -n "$all" ]; then
      echo "entries apt found:"; printf '%s\n' "$all" | awk '{print "  " $1, $2, $3, $4}' | sort -u
    else
      echo "apt found no entries at all."
    fi
    echo "add a bookworm entry, e.g. $parts/debian.sources:"
    echo "  Types: deb"
    echo "  URIs: http://deb.debian.org/debian"
    echo "  Suites: bookworm bookworm-updates"
    echo "  Components: main"
    echo "  Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg"
  } >&2
  exit 1
fi

mkdir -p "$parts"
cat > "$ours" <<SRC
# Written by Understudy's setup: PostgreSQL 13 comes from bullseye (pinned low in $pin).
Types: deb
URIs: ${mirror%/}
Suites: bullseye
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
write_pin
echo "bullseye added from ${mirror%/}"
