#!/usr/bin/env bash
# Runs the tests on a Debian machine that has Rust: first installs what they need and the
# machine lacks (Chromium and chromedriver for the browser tests; fuse3, whose fusermount3
# mounts the power-loss test's FUSE layer for a user who is not root; Debian's Python with
# aiosmtpd, the SMTP server the e-mail tests send to, and openssl for their certificates;
# Alertmanager's amtool, a client of the Alertmanager API; Prometheus's promtool, a client of
# the Prometheus query API; moto, the S3-compatible server the object-storage tests run against,
# in a Python virtual environment under ~/.cache), then
# `cargo test --workspace --locked` with any arguments given.
set -euo pipefail
cd "$(dirname "$0")"

need=()
command -v chromium >/dev/null || need+=(chromium)
command -v chromedriver >/dev/null || need+=(chromium-driver)
command -v openssl >/dev/null || need+=(openssl)
/usr/bin/python3 -c 'import aiosmtpd' 2>/dev/null || need+=(python3-aiosmtpd)
command -v amtool >/dev/null || need+=(prometheus-alertmanager)
command -v promtool >/dev/null || need+=(prometheus)
/usr/bin/python3 -c 'import venv, ensurepip' 2>/dev/null || need+=(python3-venv)
if [ "$(id -u)" -ne 0 ] && ! command -v fusermount3 >/dev/null; then
  need+=(fuse3)
fi
if [ "${#need[@]}" -gt 0 ]; then
  echo "installing ${need[*]}" >&2
  sudo=()
  [ "$(id -u)" -ne 0 ] && sudo=(sudo)
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${need[@]}"
fi

# moto 5.2.0 answers a lost conditional put with 500 instead of 412; 5.2.1 mends it.
moto="${XDG_CACHE_HOME:-$HOME/.cache}/spyglass-moto"
if ! "$moto/bin/python" -c 'import moto.server, sys; from importlib.metadata import version; v = tuple(map(int, version("moto").split(".")[:3])); sys.exit(v < (5, 2, 1))' 2>/dev/null; then
  echo "installing moto[server] into $moto" >&2
  /usr/bin/python3 -m venv "$moto"
  "$moto/bin/pip" install -q 'moto[server]>=5.2.1'
fi
export SPYGLASS_MOTO_SERVER="$moto/bin/moto_server"

exec cargo test --workspace --locked "$@"
