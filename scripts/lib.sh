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
