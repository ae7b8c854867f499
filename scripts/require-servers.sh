#!/usr/bin/env bash
# Checks that the servers the test suite needs answer on their ports, and names each one that
# does not. With CI=true a missing server fails the run; locally it is reported and the run
# goes on (the suites that need it fail by name).
set -u
declare -A ports=(
  [postgres]="PostgreSQL 127.0.0.1 5432"
  [redis]="Redis 127.0.0.1 6379"
  [rabbitmq]="RabbitMQ 127.0.0.1 5672"
  [nats]="NATS 127.0.0.1 4222"
  [kafka]="Kafka 127.0.0.1 9092"
)
missing=()
for name in "$@"; do
  read -r label host port <<<"${ports[$name]:?unknown server $name}"
  if (exec 3<>"/dev/tcp/$host/$port") 2>/dev/null; then
    echo "server: $label at $host:$port is up"
  else
    echo "server: $label at $host:$port is NOT reachable" >&2
    missing+=("$label at $host:$port")
  fi
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "${CI:-}" = "true" ]; then
    echo "required server(s) missing: ${missing[*]}" >&2
    exit 1
  fi
  echo "warning: missing server(s): ${missing[*]}; the suites that need them will fail" >&2
fi
exit 0
