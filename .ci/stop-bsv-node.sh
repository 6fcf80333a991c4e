#!/usr/bin/env bash
# Stop the node .ci/start-bsv-node.sh started in DATADIR, by its process id, and remove DATADIR.
#   .ci/stop-bsv-node.sh DATADIR
set -uo pipefail
cd "$(dirname "$0")/.."

DATADIR="${1:?usage: .ci/stop-bsv-node.sh DATADIR}"
[ -d "$DATADIR" ] || exit 0
if [ -s "$DATADIR/node.pid" ]; then
  PID="$(cat "$DATADIR/node.pid")"
  if kill -0 "$PID" 2>/dev/null; then
    kill -TERM "$PID"  # bitcoind shuts down cleanly on SIGTERM
    for _ in $(seq 1 100); do  # up to 10 s
      kill -0 "$PID" 2>/dev/null || break
      sleep 0.1
    done
    kill -0 "$PID" 2>/dev/null && kill -KILL "$PID"
  fi
fi
# Only a directory the start script made: never delete something else by a wrong argument.
if [ -e "$DATADIR/rpc-url" ] || [ -e "$DATADIR/node.pid" ] || [ -e "$DATADIR/bitcoin.conf" ]; then
  rm -rf "$DATADIR"
else
  rmdir "$DATADIR" 2>/dev/null || true  # made for a node that never started
fi
