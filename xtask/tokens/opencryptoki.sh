#!/usr/bin/env bash
# opencryptoki's software token for the module suite: `up STATE` configures slot 3 with the soft
# token alone, starts the slot daemon, initialises a token and its PINs, and writes STATE/env (the
# variables the suite reads); `down STATE` stops the daemon and puts the original config back.
# Needs root (the daemon and its config live in fixed system paths) and Debian's `opencryptoki`.
set -euo pipefail
action=${1:?up or down}
state=${2:?state directory}
conf=/etc/opencryptoki/opencryptoki.conf
module=/usr/lib/x86_64-linux-gnu/pkcs11/libopencryptoki.so
store=/var/lib/opencryptoki/swtok
slot=3
so_pin=87654321   # the soft token's default SO PIN, replaced below
label=ock-suite

stop_daemon() {
  if [ -f "$state/pkcsslotd.pid" ]; then
    kill "$(cat "$state/pkcsslotd.pid")" 2>/dev/null || true
    rm -f "$state/pkcsslotd.pid"
  fi
  pkill -x pkcsslotd 2>/dev/null || true
  for _ in $(seq 50); do pgrep -x pkcsslotd >/dev/null || break; sleep 0.1; done
}

case $action in
up)
  mkdir -p "$state"
  [ "$(id -u)" = 0 ] || { echo "opencryptoki: needs root (pkcsslotd and $conf)" >&2; exit 3; }
  [ -x /usr/sbin/pkcsslotd ] && [ -f "$module" ] ||
    { echo "opencryptoki: not installed (apt-get install -y opencryptoki)" >&2; exit 3; }
  stop_daemon
  [ -f "$state/opencryptoki.conf.orig" ] || cp -p "$conf" "$state/opencryptoki.conf.orig"
  printf 'version opencryptoki-3.1\n\nslot %s\n{\nstdll = libpkcs11_sw.so\n}\n' "$slot" > "$conf"
  # A fresh token store every time: the suite's objects never outlive a run.
  rm -rf "$store" && mkdir -p "$store/TOK_OBJ" && chgrp -R pkcs11 "$store" && chmod -R 0770 "$store"
  rm -f /dev/shm/var.lib.opencryptoki* 2>/dev/null || true
  /usr/sbin/pkcsslotd
  pgrep -x pkcsslotd > "$state/pkcsslotd.pid"
  user_pin=$(head -c 6 /dev/urandom | od -An -tu1 | tr -d ' \n' | head -c 8)
  new_so=$(head -c 6 /dev/urandom | od -An -tu1 | tr -d ' \n' | head -c 8)
  printf '%s\n' "$label" | pkcsconf -I -c "$slot" -S "$so_pin" >/dev/null
  printf '%s\n%s\n' "$new_so" "$new_so" | pkcsconf -P -c "$slot" -S "$so_pin" >/dev/null
  pkcsconf -u -c "$slot" -S "$new_so" -n "$user_pin" >/dev/null
  # A fresh user PIN must be changed once before the soft token lets it log in for real work.
  printf '%s\n%s\n' "$user_pin" "$user_pin" | pkcsconf -p -c "$slot" -U "$user_pin" >/dev/null 2>&1 || true
  {
    echo "CODESIGN_TEST_OPENCRYPTOKI_MODULE=$module"
    echo "CODESIGN_TEST_OPENCRYPTOKI_TOKEN=$label"
    echo "CODESIGN_TEST_OPENCRYPTOKI_PIN=$user_pin"
  } > "$state/env"
  ;;
down)
  stop_daemon
  if [ -f "$state/opencryptoki.conf.orig" ]; then
    cp -p "$state/opencryptoki.conf.orig" "$conf" && rm -f "$state/opencryptoki.conf.orig"
  fi
  ;;
*) echo "usage: $0 up|down STATE" >&2; exit 2 ;;
esac
