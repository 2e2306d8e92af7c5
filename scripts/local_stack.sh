#!/usr/bin/env bash
# A local Prefect stack for winnow: a server on 127.0.0.1, the `winnow` process work pool, the deployments
# of prefect.yaml and a worker. Runs until Ctrl-C or SIGTERM, then stops what it started: worker first
# (with the flow runs it launched), then the server.
#
#   scripts/local_stack.sh                      # a free port and a throwaway PREFECT_HOME, deleted at exit
#   PORT=4200 PREFECT_HOME=~/.prefect scripts/local_stack.sh   # a fixed port and a database that persists
#
# Server and worker logs go to $PREFECT_HOME/server.log and worker.log. Set PREFECT_API_DATABASE_CONNECTION_URL
# (postgresql+asyncpg://...) to use PostgreSQL instead of SQLite. Once the stack is up, a line
# "winnow stack ready: PREFECT_API_URL=..." is printed; export that URL to use the stack from another shell.
set -euo pipefail
set -m  # job control: each child gets its own process group and Prefect's signal handling (see README)

cd "$(dirname "$0")/.."
if [[ -x .venv/bin/prefect ]]; then BIN=.venv/bin/; else BIN=""; fi
PY=${BIN}python
PREFECT=${BIN}prefect
POOL=winnow  # the pool named in prefect.yaml

THROWAWAY=""
if [[ -z ${PREFECT_HOME:-} ]]; then
    PREFECT_HOME=$(mktemp -d -t winnow-prefect.XXXXXX)
    THROWAWAY=1
fi
mkdir -p "$PREFECT_HOME"
PORT=${PORT:-$("$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')}
export PREFECT_HOME
export DO_NOT_TRACK=1 PREFECT_SERVER_ANALYTICS_ENABLED=false
export PREFECT_SERVER_API_HOST=127.0.0.1 PREFECT_SERVER_API_PORT=$PORT
export PREFECT_API_URL=http://127.0.0.1:$PORT/api

SERVER="" WORKER=""

stop_group() {  # stop_group PID SIGNAL: signal the job's process group, wait up to 30 s, then SIGKILL it
    local pid=$1 signal=$2
    kill -"$signal" -- "-$pid" 2>/dev/null || return 0
    for _ in $(seq 300); do
        kill -0 -- "-$pid" 2>/dev/null || { wait "$pid" 2>/dev/null || true; return 0; }
        sleep 0.1
    done
    echo "process group $pid ignored SIG$signal for 30 s; killing it" >&2
    kill -KILL -- "-$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}

stop() {
    local status=$?
    trap - EXIT INT TERM
    [[ -n $WORKER ]] && stop_group "$WORKER" INT
    [[ -n $SERVER ]] && stop_group "$SERVER" TERM
    if [[ -n $THROWAWAY ]]; then rm -rf "$PREFECT_HOME"; fi
    echo "winnow stack stopped"
    exit "$status"
}
trap stop EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

"$PREFECT" server start --host 127.0.0.1 --port "$PORT" >"$PREFECT_HOME/server.log" 2>&1 &
SERVER=$!
"$PY" - "$PREFECT_API_URL/health" "$SERVER" <<'EOF'
import os, sys, time, urllib.request
url, pid = sys.argv[1], int(sys.argv[2])
deadline = time.monotonic() + 120
while time.monotonic() < deadline:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        sys.exit("prefect server exited; see server.log")
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            if response.status == 200:
                sys.exit(0)
    except OSError:
        time.sleep(0.5)
sys.exit("prefect server not ready after 120 s; see server.log")
EOF

"$PREFECT" work-pool create "$POOL" --type process --overwrite
# The worker stops on SIGINT; when this script was itself started in the background by a non-interactive
# shell, SIGINT arrives ignored and bash cannot restore it, so Python resets it before exec'ing the worker.
"$PY" -c 'import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); os.execvp(sys.argv[1], sys.argv[1:])' \
    "$PREFECT" worker start --pool "$POOL" --type process >"$PREFECT_HOME/worker.log" 2>&1 &
WORKER=$!
"$PREFECT" --no-prompt deploy --all

echo "winnow stack ready: PREFECT_API_URL=$PREFECT_API_URL PREFECT_HOME=$PREFECT_HOME (UI: http://127.0.0.1:$PORT)"
wait -n "$SERVER" "$WORKER" || true
echo "the Prefect server or worker exited on its own; see $PREFECT_HOME/server.log and worker.log" >&2
exit 1
