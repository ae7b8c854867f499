#!/usr/bin/env bash
# Runs one of Apache Kafka's own command-line tools from the jars start.sh fetched, quietly.
#
#   kafka-tool.sh topics --bootstrap-server 127.0.0.1:9092 --list
#   kafka-tool.sh producer --bootstrap-server 127.0.0.1:9092 --topic t   (lines from stdin)
#   kafka-tool.sh consumer --bootstrap-server 127.0.0.1:9092 --topic t --from-beginning
#   kafka-tool.sh groups | api-versions | metadata-quorum | storage | <fully.qualified.Class>
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
lib="${KEEL_KAFKA_HOME:-$root/.kafka}/lib"
[[ -d "$lib" ]] || { echo "kafka-tool: no jars in $lib; run scripts/kafka/start.sh first" >&2; exit 1; }

tool="${1:?usage: kafka-tool.sh <topics|producer|consumer|groups|api-versions|metadata-quorum|storage|Class> [args]}"
shift
case "$tool" in
  topics) class=org.apache.kafka.tools.TopicCommand ;;
  producer) class=org.apache.kafka.tools.ConsoleProducer ;;
  consumer) class=org.apache.kafka.tools.consumer.ConsoleConsumer ;;
  groups) class=org.apache.kafka.tools.consumer.group.ConsumerGroupCommand ;;
  api-versions) class=org.apache.kafka.tools.BrokerApiVersionsCommand ;;
  metadata-quorum) class=org.apache.kafka.tools.MetadataQuorumCommand ;;
  storage) class=kafka.tools.StorageTool ;;
  *) class="$tool" ;;
esac
exec java -Xmx256m -Dlog4j2.configurationFile="$here/tool-log4j2.properties" -cp "$lib/*" "$class" "$@"
