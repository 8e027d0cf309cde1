# Shell helpers of the demos (scripts/demo.sh, scripts/fleet-demo.sh),
# sourced after they set OUT (the logs' directory) and the arrays pids and
# names (the processes started, in order).

step() { printf '\n==> %s\n' "$*"; }

# free_port prints a loopback port nobody listens on and no earlier call
# picked. (Another program could still take it before we do; unlikely.)
picked=" "
free_port() {
  local port
  for _ in $(seq 200); do
    port=$((20000 + RANDOM % 40000))
    [[ $picked == *" $port "* ]] && continue
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
      picked+="$port "
      echo "$port"
      return 0
    fi
  done
  echo "no free port found" >&2
  return 1
}

# wait_for NAME TRIES COMMAND...: retries COMMAND every 0.2 s, and gives up
# at once if a process started so far has exited.
wait_for() {
  local name=$1 tries=$2 i
  shift 2
  for _ in $(seq "$tries"); do
    if "$@" >/dev/null 2>&1; then return 0; fi
    for i in "${!pids[@]}"; do
      if ! kill -0 "${pids[i]}" 2>/dev/null; then
        echo "${names[i]} exited while waiting for $name" >&2
        return 1
      fi
    done
    sleep 0.2
  done
  echo "timed out waiting for $name" >&2
  return 1
}

# start NAME COMMAND...: runs COMMAND in the background, its output in
# $OUT/NAME.log, and records it for stop_all.
start() {
  local name=$1
  shift
  "$@" >"$OUT/$name.log" 2>&1 &
  pids+=($!)
  names+=("$name")
  echo "$name started (pid $!), log in $OUT/$name.log"
}

# stop_all, the demos' EXIT trap, stops the processes in reverse order of
# start (the supervisor first, so it drains and closes the tunnel while the
# relays are still there; etcd last, so the relays can leave the fleet),
# removes ETCD_DATA if set, and on failure shows the logs' last lines.
stop_all() {
  local status=$? i pid code
  trap - EXIT INT TERM
  if ((${#pids[@]})); then step "Stopping"; fi
  for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
    pid=${pids[i]}
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 50); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.2
    done
    if kill -0 "$pid" 2>/dev/null; then
      echo "${names[i]} did not stop within 10 s; killing it" >&2
      kill -KILL "$pid" 2>/dev/null || true
    fi
    code=0
    wait "$pid" || code=$?
    if ((code == 0)); then
      echo "${names[i]} stopped"
    elif [[ ${names[i]} == etcd && $code == 143 ]]; then
      # etcd ends by its SIGTERM once it has cleaned up.
      echo "${names[i]} stopped (by SIGTERM)"
    else
      echo "${names[i]} exited with status $code"
    fi
  done
  if [[ -n ${ETCD_DATA:-} ]]; then rm -rf "$ETCD_DATA"; fi
  if ((status != 0)); then
    echo >&2
    echo "${DEMO_TITLE:-The demo} failed. Last lines of the logs:" >&2
    for name in "${names[@]}"; do
      echo "--- $OUT/$name.log" >&2
      tail -n 15 "$OUT/$name.log" >&2 || true
    done
  fi
  exit "$status"
}
