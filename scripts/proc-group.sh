# Start long-running services each in its own process group and stop exactly those: sourced by
# scripts/airflow-standalone.sh and scripts/stack.sh (bash).
#
#   group_start NAME CMD...   runs CMD in the background in a new process group (set -m), tagged
#                             with PIPELINES_PROC_TAG in its environment (only its environment);
#                             its pid is the group id. GROUP_STOPSIG[NAME] overrides SIGTERM.
#   group_wait_any            returns when any started service exits (GROUP_DIED: its pid)
#   group_stop NAME...        stops those services: their stop signal to the group, SIGKILL after
#                             AIRFLOW_STOP_GRACE s (20)
#   group_stop_all            every service, last started first, then SIGTERM/SIGKILL to any
#                             process still carrying the tag (one that left its group by setsid)
# Only processes started here are signalled: by their group ids and by this shell's own tag.

# Not exported: only the started services carry it, never this shell or its subshells.
PIPELINES_PROC_TAG="pipelines-$$-$(date +%s%N)"
declare -ga GROUP_PIDS=()
declare -gA GROUP_NAMES=() GROUP_PID_OF=() GROUP_STOPSIG=()
GROUP_DIED=""

group_start() {
  local name="$1"; shift
  set -m
  PIPELINES_PROC_TAG="$PIPELINES_PROC_TAG" "$@" &
  local pid=$!
  set +m
  GROUP_PIDS+=("$pid")
  GROUP_NAMES[$pid]="$name"
  GROUP_PID_OF[$name]="$pid"
}

group_forget() {  # a service that exited: drop it from the lists
  local pid="$1" p kept=()
  for p in "${GROUP_PIDS[@]}"; do [ "$p" = "$pid" ] || kept+=("$p"); done
  GROUP_PIDS=("${kept[@]}")
  unset "GROUP_PID_OF[${GROUP_NAMES[$pid]}]" "GROUP_NAMES[$pid]"
}

group_wait_any() {
  local status=0
  GROUP_DIED=""
  wait -n -p GROUP_DIED "${GROUP_PIDS[@]}" || status=$?
  return "$status"
}

_tagged_pids() {
  local env pid
  for env in /proc/[0-9]*/environ; do
    pid="${env#/proc/}"; pid="${pid%/environ}"
    if { tr '\0' '\n' <"$env"; } 2>/dev/null | grep -qx "PIPELINES_PROC_TAG=$PIPELINES_PROC_TAG"; then
      echo "$pid"
    fi
  done
}

_group_alive() { pgrep -g "$1" >/dev/null 2>&1; }

group_stop() {
  local grace="${AIRFLOW_STOP_GRACE:-20}" name pid waited=0 alive pids=()
  for name in "$@"; do
    pid="${GROUP_PID_OF[$name]:-}"
    [ -n "$pid" ] || continue
    pids+=("$pid")
    kill "-${GROUP_STOPSIG[$name]:-TERM}" -- "-$pid" 2>/dev/null || true
  done
  [ "${#pids[@]}" -eq 0 ] && return 0
  while :; do
    alive=0
    for pid in "${pids[@]}"; do _group_alive "$pid" && alive=1; done
    [ "$alive" -eq 0 ] && break
    if [ "$waited" -ge "$grace" ]; then
      for pid in "${pids[@]}"; do kill -KILL -- "-$pid" 2>/dev/null || true; done
      break
    fi
    sleep 1; waited=$((waited + 1))
  done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; group_forget "$pid"; done
}

group_stop_all() {
  trap '' INT TERM
  local i names=()
  for ((i = ${#GROUP_PIDS[@]} - 1; i >= 0; i--)); do names+=("${GROUP_NAMES[${GROUP_PIDS[$i]}]}"); done
  [ "${#names[@]}" -gt 0 ] && echo "stopping: ${names[*]}" >&2
  for name in "${names[@]}"; do group_stop "$name"; done
  local strays
  strays="$(_tagged_pids)"
  if [ -n "$strays" ]; then
    echo "stopping strays that left their group: $strays" >&2
    # shellcheck disable=SC2086
    kill -TERM $strays 2>/dev/null || true
    sleep 2
    strays="$(_tagged_pids)"
    # shellcheck disable=SC2086
    [ -z "$strays" ] || kill -KILL $strays 2>/dev/null || true
  fi
}
