#!/usr/bin/env bash
# Install what dbshift's build, demo and tests need, when it is missing: the MariaDB server and
# mariadb-backup, HAProxy (self-managed redirect tests, proxy benchmarks), etcd (the shared
# state store's tests) and protoc (the etcd client's build), all Debian packages, moto_server
# (PyPI) and a Rust toolchain check.
# Safe to run again.
set -euo pipefail

need_apt=()
have() { command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ] || [ -x "/usr/bin/$1" ]; }
have mariadbd || need_apt+=(mariadb-server)
have mariadb-install-db || need_apt+=(mariadb-server)
have mariadb-backup || need_apt+=(mariadb-backup)
have mariadb || need_apt+=(mariadb-client)
have haproxy || need_apt+=(haproxy)
have etcd || need_apt+=(etcd-server)
have etcdctl || need_apt+=(etcd-client)
# The etcd client crate compiles etcd's protocol files at build time: protoc and the
# well-known .proto files it imports.
have protoc || need_apt+=(protobuf-compiler)
[ -f /usr/include/google/protobuf/descriptor.proto ] || need_apt+=(libprotobuf-dev)

if [ ${#need_apt[@]} -gt 0 ]; then
  sudo=""
  if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null 2>&1 || { echo "deps: need root (or sudo) to install: ${need_apt[*]}" >&2; exit 1; }
    sudo="sudo"
  fi
  echo "deps: installing ${need_apt[*]} (Debian packages)"
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get update -qq
  $sudo apt-get install -y -qq --no-install-recommends $(printf '%s\n' "${need_apt[@]}" | sort -u) >/dev/null
fi

# The AWS provider's tests run against moto_server (PyPI moto[server]): installed with pip, or,
# where the system Python refuses pip installs (PEP 668), into a virtual environment that the
# tests look in too ($DBSHIFT_MOTO_VENV, default ~/.local/share/dbshift/moto).
moto_venv="${DBSHIFT_MOTO_VENV:-$HOME/.local/share/dbshift/moto}"
if ! command -v moto_server >/dev/null 2>&1 && [ ! -x "$moto_venv/bin/moto_server" ]; then
  echo "deps: installing moto[server] (PyPI) for the AWS provider's tests"
  pip_cmd="$(command -v pip || command -v pip3 || true)"
  if [ -z "$pip_cmd" ] || ! "$pip_cmd" install -q 'moto[server]'; then
    if ! python3 -m venv --help >/dev/null 2>&1 || ! python3 -c 'import ensurepip' >/dev/null 2>&1; then
      sudo=""
      [ "$(id -u)" -ne 0 ] && sudo="sudo"
      export DEBIAN_FRONTEND=noninteractive
      $sudo apt-get update -qq
      $sudo apt-get install -y -qq --no-install-recommends python3 python3-venv python3-pip >/dev/null
    fi
    python3 -m venv "$moto_venv"
    "$moto_venv/bin/pip" install -q 'moto[server]'
  fi
  command -v moto_server >/dev/null 2>&1 || [ -x "$moto_venv/bin/moto_server" ] || {
    echo "deps: moto_server still missing after the install: see the messages above" >&2
    exit 1
  }
fi

if ! command -v cargo >/dev/null 2>&1; then
  echo "deps: cargo is missing: install Rust (https://rustup.rs) and run again" >&2
  exit 1
fi
