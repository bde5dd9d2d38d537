#!/usr/bin/env bash
# Start or stop a local single-node Kafka broker (KRaft, no ZooKeeper) on
# 127.0.0.1, built from the org.apache.kafka jars on Maven Central
# (tools/kafka/pom.xml) into .data/kafka. Idempotent; prints the bootstrap
# address. SINGLEVIEW_KAFKA_ADDR (default 127.0.0.1:9092) is the broker's
# listener; its KRaft controller listens on the next port.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/_java.sh
ADDR="${SINGLEVIEW_KAFKA_ADDR:-127.0.0.1:9092}"
HOST="${ADDR%:*}"
PORT="${ADDR##*:}"
CONTROLLER="$HOST:$((PORT + 1))"
OUT=".data/kafka"
DATA="$OUT/data-$PORT"
PIDFILE="$OUT/broker-$PORT.pid"
LOG="$OUT/broker-$PORT.log"

answers() { (exec 3<>"/dev/tcp/$HOST/$PORT") 2>/dev/null; }

configure() {
  cat >"$OUT/server-$PORT.properties" <<PROPS
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@$CONTROLLER
listeners=PLAINTEXT://$ADDR,CONTROLLER://$CONTROLLER
advertised.listeners=PLAINTEXT://$ADDR
controller.listener.names=CONTROLLER
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
log.dirs=$DATA
num.partitions=1
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
auto.create.topics.enable=true
PROPS
}

start() {
  if answers; then echo "Kafka already up on $ADDR"; echo "export SINGLEVIEW_KAFKA_ADDR=$ADDR"; return; fi
  mvn_package tools/kafka/pom.xml "$OUT"
  configure
  if [ ! -f "$DATA/meta.properties" ]; then
    java -cp "$OUT/lib/*" kafka.tools.StorageTool format --ignore-formatted \
      -t "$(java -cp "$OUT/lib/*" kafka.tools.StorageTool random-uuid)" \
      -c "$OUT/server-$PORT.properties" >"$LOG" 2>&1
  fi
  setsid java -Xmx512m -cp "$OUT/lib/*" kafka.Kafka "$OUT/server-$PORT.properties" >>"$LOG" 2>&1 </dev/null &
  echo $! > "$PIDFILE"
  for _ in $(seq 1 300); do
    if answers; then echo "Kafka up on $ADDR (data in $DATA)"; echo "export SINGLEVIEW_KAFKA_ADDR=$ADDR"; return; fi
    if ! kill -0 "$(cat "$PIDFILE")" 2>/dev/null; then break; fi
    sleep 0.1
  done
  tail -20 "$LOG" >&2; echo "Kafka did not start; see $LOG" >&2; exit 1
}

stop() {
  if [ -f "$PIDFILE" ]; then
    kill "$(cat "$PIDFILE")" 2>/dev/null || true
    rm -f "$PIDFILE"; echo "Kafka on $ADDR stopped"
  fi
}

case "${1:-start}" in
  start) start ;;
  stop) stop ;;
  *) echo "usage: $0 start|stop" >&2; exit 2 ;;
esac
