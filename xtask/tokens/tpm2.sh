#!/usr/bin/env bash
# tpm2-pkcs11 over a software TPM for the module suite: `up STATE` starts swtpm, a private D-Bus
# session bus and the tpm2-abrmd resource manager on it (without one the TPM runs out of object
# slots), makes a token with tpm2_ptool, and writes STATE/env (the variables the suite and the
# module read); `down STATE` stops all three. Everything lives in STATE; no root needed.
set -euo pipefail
action=${1:?up or down}
state=$(mkdir -p "${2:?state directory}" && cd "$2" && pwd)
module=/usr/lib/x86_64-linux-gnu/pkcs11/libtpm2_pkcs11.so
label=tpm2-suite

stop() {
  for name in abrmd swtpm dbus; do
    if [ -f "$state/$name.pid" ]; then
      kill "$(cat "$state/$name.pid")" 2>/dev/null || true
      rm -f "$state/$name.pid"
    fi
  done
}

case $action in
up)
  for tool in swtpm tpm2-abrmd dbus-daemon tpm2_dictionarylockout; do
    command -v "$tool" >/dev/null ||
      { echo "tpm2-pkcs11: $tool is not installed (apt-get install -y swtpm swtpm-tools tpm2-tools tpm2-abrmd libtss2-tcti-tabrmd0 dbus libtpm2-pkcs11-1 python3-tpm2-pkcs11-tools)" >&2; exit 3; }
  done
  [ -f "$module" ] || { echo "tpm2-pkcs11: $module is missing" >&2; exit 3; }
  # Debian ships tpm2_ptool as a module of its own Python, without the command.
  ptool() { /usr/bin/python3 -m tpm2_pkcs11.tpm2_ptool "$@"; }
  ptool --help >/dev/null 2>&1 ||
    { echo "tpm2-pkcs11: tpm2_ptool is missing (apt-get install -y python3-tpm2-pkcs11-tools)" >&2; exit 3; }
  stop
  rm -rf "$state/tpm" "$state/store" && mkdir -p "$state/tpm" "$state/store"
  # A free port pair for the TPM's command and control channels.
  port=$(/usr/bin/python3 -c 'import socket
for p in range(23000, 24000, 2):
    try:
        a = socket.socket(); a.bind(("127.0.0.1", p)); b = socket.socket(); b.bind(("127.0.0.1", p + 1))
        a.close(); b.close(); print(p); break
    except OSError: pass')
  swtpm socket --tpmstate dir="$state/tpm" --tpm2 --server type=tcp,bindaddr=127.0.0.1,port="$port" \
    --ctrl type=tcp,bindaddr=127.0.0.1,port=$((port + 1)) --flags not-need-init,startup-clear \
    --pid file="$state/swtpm.pid" --daemon
  dbus-daemon --session --fork --print-address=3 3>"$state/dbus.addr" --print-pid=4 4>"$state/dbus.pid"
  export DBUS_SESSION_BUS_ADDRESS
  DBUS_SESSION_BUS_ADDRESS=$(head -1 "$state/dbus.addr")
  tpm2-abrmd --session --allow-root --tcti=swtpm:host=127.0.0.1,port="$port" >"$state/abrmd.log" 2>&1 &
  echo $! > "$state/abrmd.pid"
  export TPM2TOOLS_TCTI=tabrmd:bus_type=session TPM2_PKCS11_TCTI=tabrmd:bus_type=session
  export TPM2_PKCS11_STORE="$state/store"
  for _ in $(seq 100); do tpm2_getrandom 4 >/dev/null 2>&1 && break; sleep 0.1; done
  # The suite tries wrong PINs on purpose: let the TPM's dictionary-attack guard allow many.
  tpm2_dictionarylockout --setup-parameters --max-tries=1000 --recovery-time=1 --lockout-recovery-time=1 >/dev/null
  user_pin=$(head -c 6 /dev/urandom | od -An -tu1 | tr -d ' \n' | head -c 10)
  so_pin=$(head -c 6 /dev/urandom | od -An -tu1 | tr -d ' \n' | head -c 10)
  ptool init --path "$state/store" >/dev/null
  ptool addtoken --pid=1 --sopin="$so_pin" --userpin="$user_pin" --label="$label" --path "$state/store" >/dev/null
  {
    echo "CODESIGN_TEST_TPM2_MODULE=$module"
    echo "CODESIGN_TEST_TPM2_TOKEN=$label"
    echo "CODESIGN_TEST_TPM2_PIN=$user_pin"
    echo "DBUS_SESSION_BUS_ADDRESS=$DBUS_SESSION_BUS_ADDRESS"
    echo "TPM2_PKCS11_TCTI=$TPM2_PKCS11_TCTI"
    echo "TPM2_PKCS11_STORE=$TPM2_PKCS11_STORE"
  } > "$state/env"
  ;;
down) stop ;;
*) echo "usage: $0 up|down STATE" >&2; exit 2 ;;
esac
