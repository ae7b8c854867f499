#!/usr/bin/env bash
# Proves the test broker works end to end with Kafka's own tools: creates a topic (if missing),
# produces one message, and consumes it back. Run after start.sh; exits non-zero on failure.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
brokers="${KEEL_KAFKA_BROKERS:-127.0.0.1:${KEEL_KAFKA_PORT:-9092}}"
topic="${1:-keel-smoke}"
message="keel smoke $(date -u +%Y-%m-%dT%H:%M:%S.%3NZ) $$"

"$here/kafka-tool.sh" topics --bootstrap-server "$brokers" --create --if-not-exists \
  --topic "$topic" --partitions 1 --replication-factor 1 >/dev/null
echo "$message" | "$here/kafka-tool.sh" producer --bootstrap-server "$brokers" --topic "$topic"
# Every message of the topic, so a run after a restart also shows the earlier runs' messages.
consumed="$("$here/kafka-tool.sh" consumer --bootstrap-server "$brokers" --topic "$topic" \
  --from-beginning --timeout-ms 6000 2>/dev/null || true)"
echo "$consumed" | sed 's/^/  consumed: /'
if grep -qxF "$message" <<<"$consumed"; then
  echo "kafka smoke: ok ($(grep -c . <<<"$consumed") message(s) in $topic)"
else
  echo "kafka smoke: FAILED: did not read back \"$message\" from $topic" >&2
  exit 1
fi
