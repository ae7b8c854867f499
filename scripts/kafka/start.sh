#!/usr/bin/env bash
# Starts a single-node Apache Kafka (KRaft: one process is broker and controller) on
# 127.0.0.1:9092 for keel's tests, and returns once it answers a metadata request.
#
# Idempotent: fetches the pinned jars with Maven the first time (scripts/kafka/pom.xml ->
# .kafka/lib), formats storage once (.kafka/data), and exits 0 at once when the broker is
# already running. Data survives stop/start; `rm -rf .kafka/data` for a clean cluster.
# With KEEL_KAFKA_BROKERS set, an external Kafka is used and this script does nothing.
#
# Environment (all optional):
#   KEEL_KAFKA_BROKERS          use this Kafka instead; nothing is started
#   KEEL_KAFKA_HOME             state folder (default: <repo>/.kafka)
#   KEEL_KAFKA_PORT             client listener port (default: 9092)
#   KEEL_KAFKA_CONTROLLER_PORT  controller listener port (default: 9093)
#   KEEL_KAFKA_HEAP             JVM heap flags (default: -Xms256m -Xmx512m)
#   KEEL_KAFKA_START_TIMEOUT    seconds to wait for readiness (default: 120)
set -euo pipefail

if [[ -n "${KEEL_KAFKA_BROKERS:-}" ]]; then
  echo "kafka: KEEL_KAFKA_BROKERS=${KEEL_KAFKA_BROKERS} is set; using it, not starting a broker"
  exit 0
fi

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
home="${KEEL_KAFKA_HOME:-$root/.kafka}"
port="${KEEL_KAFKA_PORT:-9092}"
controller_port="${KEEL_KAFKA_CONTROLLER_PORT:-9093}"
heap="${KEEL_KAFKA_HEAP:--Xms256m -Xmx512m}"
timeout="${KEEL_KAFKA_START_TIMEOUT:-120}"
lib="$home/lib"
data="$home/data"
config="$home/server.properties"
log="$home/server.log"
pidfile="$home/kafka.pid"
classpath="$lib/*"

mkdir -p "$home"

log_tail() {
  echo "---- last 40 lines of $log ----" >&2
  tail -n 40 "$log" >&2 2>/dev/null || echo "(no log)" >&2
  echo "-------------------------------" >&2
}

# The pid in the pid file, if that process is alive and is our broker (not a recycled pid).
running_pid() {
  [[ -f "$pidfile" ]] || return 1
  local pid
  pid="$(cat "$pidfile")"
  [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q "kafka.Kafka $config" || return 1
  echo "$pid"
}

# Seconds since a `date +%s%3N` stamp, with tenths.
elapsed() {
  local ms=$(($(date +%s%3N) - $1))
  printf '%d.%ds' $((ms / 1000)) $((ms % 1000 / 100))
}

port_open() {
  (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# Ready = the broker answers a metadata request listing itself. Uses keel's tiny protocol probe
# (no JVM start); falls back to Kafka's own tool when node_modules is not installed.
metadata_ok() {
  if [[ -d "$root/node_modules/tsx" ]]; then
    (cd "$root" && node --import tsx "$here/metadata-probe.ts" "127.0.0.1:$port" 3000) >/dev/null 2>&1
  else
    java -cp "$classpath" org.apache.kafka.tools.BrokerApiVersionsCommand \
      --bootstrap-server "127.0.0.1:$port" >/dev/null 2>&1
  fi
}

wait_ready() {
  local pid="$1"
  local deadline=$(($(date +%s) + timeout))
  while :; do
    if ! kill -0 "$pid" 2>/dev/null; then
      echo "kafka: the broker (pid $pid) exited during startup" >&2
      log_tail
      rm -f "$pidfile"
      exit 1
    fi
    if port_open "$port" && metadata_ok; then
      return 0
    fi
    if (($(date +%s) >= deadline)); then
      echo "kafka: not ready after ${timeout}s (pid $pid still running; see $log)" >&2
      log_tail
      exit 1
    fi
    sleep 0.5
  done
}

if pid="$(running_pid)"; then
  if port_open "$port" && metadata_ok; then
    echo "kafka: already running (pid $pid) on 127.0.0.1:$port"
    exit 0
  fi
  echo "kafka: running (pid $pid) but not ready yet; waiting"
  wait_ready "$pid"
  echo "kafka: ready on 127.0.0.1:$port (pid $pid)"
  exit 0
fi

if port_open "$port"; then
  echo "kafka: 127.0.0.1:$port is taken by a process this script did not start." >&2
  echo "       Stop it, or point keel at it with KEEL_KAFKA_BROKERS=127.0.0.1:$port." >&2
  exit 1
fi

# 1. The jars, once per version of pom.xml (a changed pin fetches again).
pom_sum="$(sha256sum "$here/pom.xml" | cut -d' ' -f1)"
if [[ ! -f "$lib/.pom.sha256" || "$(cat "$lib/.pom.sha256")" != "$pom_sum" ]]; then
  command -v mvn >/dev/null || { echo "kafka: mvn (Maven) is needed to fetch the Kafka jars" >&2; exit 1; }
  echo "kafka: fetching the Kafka jars from Maven Central into $lib"
  fetch_started="$(date +%s%3N)"
  rm -rf "$lib.tmp"
  if ! mvn -q -B -Dstyle.color=never -f "$here/pom.xml" dependency:copy-dependencies \
    -DincludeScope=runtime -DoutputDirectory="$lib.tmp" >"$home/fetch.log" 2>&1; then
    echo "kafka: fetching the jars failed (Maven Central unreachable?):" >&2
    tail -n 30 "$home/fetch.log" >&2
    exit 1
  fi
  rm -rf "$lib"
  mv "$lib.tmp" "$lib"
  echo "$pom_sum" >"$lib/.pom.sha256"
  echo "kafka: fetched $(ls "$lib" | wc -l) jars in $(elapsed "$fetch_started")"
fi

# 2. The configuration, rewritten on every start so an edit here always takes effect.
mkdir -p "$data"
cat >"$config" <<EOF
# Written by scripts/kafka/start.sh; edits here are overwritten on the next start.
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$controller_port
listeners=PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$controller_port
advertised.listeners=PLAINTEXT://127.0.0.1:$port
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
log.dirs=$data

# Topics are declared by the code that uses them (the adapter creates them idempotently), as on
# a production cluster; auto-creation would hide a misspelt topic name.
auto.create.topics.enable=false
# Three partitions when a topic is created without a count: enough for per-key ordering with
# cross-key parallelism to be observable.
num.partitions=3
default.replication.factor=1
min.insync.replicas=1

# One node: every internal topic has one replica.
offsets.topic.replication.factor=1
offsets.topic.num.partitions=10
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=10
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1

# Tests: a group rebalances at once, and a consumer may ask for a short session timeout so a
# crashed consumer's partitions move in seconds.
group.initial.rebalance.delay.ms=0
group.min.session.timeout.ms=1000

# After a crash (stop.sh --kill) the restarted broker cannot register until the controller has
# expired its previous incarnation's session: 9 s by default, 4 s here. Not lower, so that a
# loaded machine's GC pause does not fence a healthy broker.
broker.heartbeat.interval.ms=1000
broker.session.timeout.ms=4000

# A shared two-core machine: fewer threads than the defaults.
num.network.threads=2
num.io.threads=4
background.threads=4
num.recovery.threads.per.data.dir=1
EOF

# 3. Storage, formatted once with a random cluster id.
if [[ ! -f "$data/meta.properties" ]]; then
  cluster_id="$(java -cp "$classpath" kafka.tools.StorageTool random-uuid)"
  java -Dlog4j2.configurationFile="$here/log4j2.properties" -cp "$classpath" \
    kafka.tools.StorageTool format --cluster-id "$cluster_id" --config "$config" --ignore-formatted >/dev/null
  echo "kafka: formatted $data (cluster id $cluster_id)"
fi

# 4. Start, detached from this shell's session so it outlives the caller.
[[ -f "$log" ]] && mv "$log" "$log.1"
started="$(date +%s%3N)"
# shellcheck disable=SC2086 # $heap is a list of JVM flags
nohup setsid java -server $heap -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -Djava.awt.headless=true \
  -Dlog4j2.configurationFile="$here/log4j2.properties" \
  -cp "$classpath" kafka.Kafka "$config" >"$log" 2>&1 </dev/null &
pid=$!
echo "$pid" >"$pidfile"
echo "kafka: starting (pid $pid, log $log)"

wait_ready "$pid"
echo "kafka: ready on 127.0.0.1:$port (pid $pid) after $(elapsed "$started")"
