#!/usr/bin/env bash
# The Kafka broker of docker-compose.yml: single-node Apache Kafka 4 in KRaft mode in the apache/kafka
# image, configured like the local stack's broker (deploy/kafka/server.properties + sasl-scram.properties).
#
#   KAFKA_SECURITY=sasl-scram (the default): SCRAM-SHA-512 logins on every client listener, the
#     StandardAuthorizer, KAFKA_ADMIN_USER the only super user, no access without an ACL.
#   KAFKA_SECURITY=plaintext: no authentication at all (docker-compose.insecure.yml only).
#   KAFKA_EXTERNAL_ADVERTISED=host:port adds a listener on :19092 for clients outside compose (same security).
#
# The admin's SCRAM credential is written when the storage is first formatted: changing
# KAFKA_ADMIN_PASSWORD afterwards does not change it (alter it with kafka-configs.sh, or start afresh).
set -euo pipefail

KAFKA_HOME="${KAFKA_HOME:-/opt/kafka}"
CONF_DIR="${KAFKA_CONF_DIR:-/tmp/twinstream-kafka}"
DATA_DIR="${KAFKA_DATA_DIR:-/var/lib/kafka/data}"
SECURITY="${KAFKA_SECURITY:-sasl-scram}"
ADMIN_USER="${KAFKA_ADMIN_USER:-admin}"
MAX_BYTES="${KAFKA_MAX_MESSAGE_BYTES:-26214400}"
RETENTION_HOURS="${KAFKA_LOG_RETENTION_HOURS:-24}"

fail() { echo "kafka: $*" >&2; exit 2; }
umask 077  # the files below hold the admin's password
mkdir -p "$CONF_DIR" "$DATA_DIR"

case "$SECURITY" in
  sasl-scram)
    [[ -n "${KAFKA_ADMIN_PASSWORD:-}" ]] || fail "set KAFKA_ADMIN_PASSWORD in .env (openssl rand -hex 32)"
    # Both go verbatim into JAAS options and --add-scram: no quotes, commas or brackets.
    [[ "$ADMIN_USER" =~ ^[A-Za-z0-9_-]{1,64}$ ]] || fail "KAFKA_ADMIN_USER must match [A-Za-z0-9_-]{1,64}"
    [[ "$KAFKA_ADMIN_PASSWORD" =~ ^[A-Za-z0-9._~+/=-]{12,256}$ ]] \
      || fail "KAFKA_ADMIN_PASSWORD must be 12-256 characters of A-Z a-z 0-9 . _ ~ + / = - (openssl rand -hex 32)"
    listener=SASL protocol=SASL_PLAINTEXT mode="sasl-scram admin=$ADMIN_USER" ;;
  plaintext)
    listener=PLAINTEXT protocol=PLAINTEXT mode=plaintext ;;
  *) fail "KAFKA_SECURITY must be sasl-scram or plaintext, not '$SECURITY'" ;;
esac

# A storage formatted for one mode cannot serve the other (the admin login lives in it).
if [[ -f "$DATA_DIR/meta.properties" ]]; then
  formatted="$(cat "$DATA_DIR/.twinstream-security" 2>/dev/null || echo plaintext)"
  [[ "$formatted" == "$mode" ]] \
    || fail "the volume was formatted for '$formatted', KAFKA_SECURITY asks for '$mode': remove the kafka-data volume or switch back"
fi

listeners="$listener://0.0.0.0:9092,CONTROLLER://127.0.0.1:9093"  # the controller: this container only
advertised="$listener://${KAFKA_ADVERTISED_HOST:-kafka}:9092"
protocols="CONTROLLER:$protocol,$listener:$protocol"
if [[ -n "${KAFKA_EXTERNAL_ADVERTISED:-}" ]]; then
  listeners+=",EXTERNAL://0.0.0.0:19092"
  advertised+=",EXTERNAL://$KAFKA_EXTERNAL_ADVERTISED"
  protocols+=",EXTERNAL:$protocol"
fi

config="$CONF_DIR/server.properties"
cat > "$config" <<EOF
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:9093
listeners=$listeners
advertised.listeners=$advertised
controller.listener.names=CONTROLLER
inter.broker.listener.name=$listener
listener.security.protocol.map=$protocols
log.dirs=$DATA_DIR
num.partitions=4
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
message.max.bytes=$MAX_BYTES
replica.fetch.max.bytes=$MAX_BYTES
socket.request.max.bytes=$(( MAX_BYTES > 104857600 ? MAX_BYTES + 1048576 : 104857600 ))
group.initial.rebalance.delay.ms=0
log.retention.hours=$RETENTION_HOURS
auto.create.topics.enable=false
EOF

client="$CONF_DIR/admin.properties"  # for the healthcheck and kafka-*.sh tools: --command-config
scram=()
if [[ "$SECURITY" == sasl-scram ]]; then
  scram_login="org.apache.kafka.common.security.scram.ScramLoginModule required username=\"$ADMIN_USER\" password=\"$KAFKA_ADMIN_PASSWORD\";"
  plain_login="org.apache.kafka.common.security.plain.PlainLoginModule required username=\"$ADMIN_USER\" password=\"$KAFKA_ADMIN_PASSWORD\" user_$ADMIN_USER=\"$KAFKA_ADMIN_PASSWORD\";"
  cat >> "$config" <<EOF
sasl.enabled.mechanisms=SCRAM-SHA-512
sasl.mechanism.inter.broker.protocol=SCRAM-SHA-512
listener.name.sasl.scram-sha-512.sasl.jaas.config=$scram_login
listener.name.external.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
sasl.mechanism.controller.protocol=PLAIN
listener.name.controller.sasl.enabled.mechanisms=PLAIN
listener.name.controller.plain.sasl.jaas.config=$plain_login
authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer
super.users=User:$ADMIN_USER
allow.everyone.if.no.acl.found=false
EOF
  printf 'security.protocol=SASL_PLAINTEXT\nsasl.mechanism=SCRAM-SHA-512\nsasl.jaas.config=%s\n' "$scram_login" > "$client"
  scram=(--add-scram "SCRAM-SHA-512=[name=$ADMIN_USER,password=$KAFKA_ADMIN_PASSWORD]")
else
  printf 'security.protocol=PLAINTEXT\n' > "$client"
fi

if [[ ! -f "$DATA_DIR/meta.properties" ]]; then
  "$KAFKA_HOME/bin/kafka-storage.sh" format -t "$("$KAFKA_HOME/bin/kafka-storage.sh" random-uuid)" \
    -c "$config" ${scram[@]+"${scram[@]}"}
  printf '%s\n' "$mode" > "$DATA_DIR/.twinstream-security"
fi
exec "$KAFKA_HOME/bin/kafka-server-start.sh" "$config"
