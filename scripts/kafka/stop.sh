#!/usr/bin/env bash
# Stops the broker started by scripts/kafka/start.sh. Data in .kafka/data is kept.
#
#   stop.sh          SIGTERM: a clean shutdown (flushes, closes the log); SIGKILL after 30 s
#   stop.sh --kill   SIGKILL at once: a crash, for tests of recovery
#
# Exits 0 when no broker is running. With KEEL_KAFKA_BROKERS set, does nothing.
set -euo pipefail

if [[ -n "${KEEL_KAFKA_BROKERS:-}" ]]; then
  echo "kafka: KEEL_KAFKA_BROKERS is set; not stopping an external Kafka"
  exit 0
fi

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
home="${KEEL_KAFKA_HOME:-$root/.kafka}"
pidfile="$home/kafka.pid"
config="$home/server.properties"
grace="${KEEL_KAFKA_STOP_TIMEOUT:-30}"

if [[ ! -f "$pidfile" ]]; then
  echo "kafka: not running (no $pidfile)"
  exit 0
fi
pid="$(cat "$pidfile")"
# Only signal the process start.sh started: the pid may have been reused since.
if ! kill -0 "$pid" 2>/dev/null || ! tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q "kafka.Kafka $config"; then
  echo "kafka: not running (stale pid file)"
  rm -f "$pidfile"
  exit 0
fi

if [[ "${1:-}" == "--kill" ]]; then
  kill -KILL "$pid"
else
  kill -TERM "$pid"
fi
deadline=$(($(date +%s) + grace))
while kill -0 "$pid" 2>/dev/null; do
  if (($(date +%s) >= deadline)); then
    echo "kafka: still running ${grace}s after SIGTERM; sending SIGKILL" >&2
    kill -KILL "$pid" 2>/dev/null || true
  fi
  sleep 0.2
done
rm -f "$pidfile"
echo "kafka: stopped (pid $pid)"
