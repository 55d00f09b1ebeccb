#!/usr/bin/env bash
# The real local stack: KRaft Kafka, one node or three (jars from Maven Central, no Docker), one
# Redis with an append-only file, one Prometheus scraping the sandan services and one schema
# registry (Apicurio Registry, assembled from Maven Central; Confluent-compatible API), all on
# 127.0.0.1, state under $SANDAN_LOCAL_DIR.
#
#   scripts/stack.sh setup    fetch the Kafka jars, build the registry, apt-install redis-server, prometheus, docker-compose, faketime and iptables if missing
#   scripts/stack.sh up       start whatever is not running, then wait until all of them answer
#   scripts/stack.sh down     stop them (SIGTERM, then SIGKILL after a timeout)
#   scripts/stack.sh status   one line per service; exit 0 only when all are running
#   scripts/stack.sh wait     only wait until all of them answer
#   scripts/stack.sh config   only write their configuration files (what `up` would run)
#   scripts/stack.sh reset    down, then delete the Kafka, Redis and Prometheus data
#   scripts/stack.sh env      the client settings for this stack, as export lines (eval them)
#
# SANDAN_KAFKA_NODES=3 starts three Kafka nodes, each broker and controller at once (combined
# roles), the three of them the controller quorum: node i (0, 1, 2) listens on
# SANDAN_KAFKA_PORT + 10*i and SANDAN_KAFKA_CONTROLLER_PORT + 10*i, keeps its data in
# $SANDAN_LOCAL_DIR/kafka/node-<i+1>, and every topic is replicated 3 with min.insync.replicas 2.
# status, down, wait and reset act on every node.
#
# SANDAN_KAFKA_SECURE_PORT=P (not 0) makes every Kafka node also open a SASL_SSL listener (node i
# on P + 10*i) with SCRAM-SHA-512 logins: a test CA and a broker certificate for 127.0.0.1 and
# localhost (openssl), the user "sandan" with a random password, and a client.properties for
# Java tools are made once in $SANDAN_LOCAL_DIR/kafka/secure; `env` then prints the settings
# that point sandan's clients at that listener. The PLAINTEXT listener stays for the rest.
#
# up, down, wait and config take service names (kafka, redis, prometheus, registry) to act on
# only those, e.g. `down kafka` or `up prometheus`; without names they act on all of them.
#
# Every command is idempotent. Settings are the SANDAN_* variables of
# services/common/config.py; their defaults are read from that file so they cannot drift.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CONFIG_PY=$ROOT/services/common/config.py

die() { echo "stack: error: $*" >&2; exit 1; }
say() { echo "stack: $*"; }

# The value of a setting: the environment, else the literal default in config.py.
setting() {
    local name=$1 value
    if [[ -n ${!name+x} ]]; then
        printf '%s' "${!name}"
        return
    fi
    value=$(sed -n "s/^ *Setting(\"$name\", \"\([^\"]*\)\".*/\1/p" "$CONFIG_PY")
    [[ -n $value ]] || die "no literal default for $name in $CONFIG_PY; set $name in the environment"
    printf '%s' "$value"
}

SERVICES=(kafka redis prometheus registry)

KAFKA_VERSION=$(setting SANDAN_KAFKA_VERSION)
KAFKA_PORT=$(setting SANDAN_KAFKA_PORT)
CONTROLLER_PORT=$(setting SANDAN_KAFKA_CONTROLLER_PORT)
KAFKA_HEAP=$(setting SANDAN_KAFKA_HEAP)
KAFKA_NODES=$(setting SANDAN_KAFKA_NODES)
[[ $KAFKA_NODES == 1 || $KAFKA_NODES == 3 ]] || die "SANDAN_KAFKA_NODES='$KAFKA_NODES' must be 1 or 3"
if ((KAFKA_NODES > 1)); then KAFKA_HEAP=$(setting SANDAN_KAFKA_CLUSTER_HEAP); fi
# Ports of node i (0-based) are the settings plus NODE_PORT_STEP*i.
NODE_PORT_STEP=10
SECURE_PORT=$(setting SANDAN_KAFKA_SECURE_PORT)
REDIS_PORT=$(setting SANDAN_REDIS_PORT)
PROMETHEUS_PORT=$(setting SANDAN_PROMETHEUS_PORT)
REGISTRY_PORT=$(setting SANDAN_SCHEMA_REGISTRY_PORT)
REGISTRY_HEAP=$(setting SANDAN_SCHEMA_REGISTRY_HEAP)
TIMEOUT=$(setting SANDAN_STACK_TIMEOUT)
# Not a literal in config.py (it is computed from the project root), so mirrored here.
LOCAL_DIR=${SANDAN_LOCAL_DIR:-$ROOT/.local}

JARS_DIR=$ROOT/.cache/kafka-jars/$KAFKA_VERSION
KAFKA_DIR=$LOCAL_DIR/kafka
SECURE_DIR=$KAFKA_DIR/secure
SCRAM_USER=sandan
REDIS_DIR=$LOCAL_DIR/redis
REDIS_PID=$REDIS_DIR/redis.pid
REDIS_LOG=$REDIS_DIR/redis.log
REDIS_CONF=$REDIS_DIR/redis.conf
PROMETHEUS_SOURCE=$ROOT/deploy/prometheus/prometheus.yml
PROMETHEUS_DIR=$LOCAL_DIR/prometheus
PROMETHEUS_DATA=$PROMETHEUS_DIR/data
PROMETHEUS_PID=$PROMETHEUS_DIR/prometheus.pid
PROMETHEUS_LOG=$PROMETHEUS_DIR/prometheus.log
PROMETHEUS_CONF=$PROMETHEUS_DIR/prometheus.yml
REGISTRY_VERSION=$(sed -n 's|.*<apicurio.version>\(.*\)</apicurio.version>.*|\1|p' "$ROOT/deploy/schema-registry/pom.xml")
REGISTRY_BUILD=$ROOT/.cache/schema-registry/$REGISTRY_VERSION
REGISTRY_JAR=$REGISTRY_BUILD/sandan-schema-registry-1-runner.jar
REGISTRY_DIR=$LOCAL_DIR/registry
REGISTRY_PID=$REGISTRY_DIR/registry.pid
REGISTRY_LOG=$REGISTRY_DIR/registry.log
STOP_TIMEOUT=30

for port in "$KAFKA_PORT" "$CONTROLLER_PORT" "$SECURE_PORT" "$REDIS_PORT" "$PROMETHEUS_PORT" "$REGISTRY_PORT"; do
    [[ $port =~ ^[0-9]+$ ]] || die "port '$port' is not a number (check SANDAN_*_PORT)"
done

# kafka_node N (1-based) sets the NODE_* and KAFKA_* variables of node N. One node lives in
# $KAFKA_DIR itself; each of three in $KAFKA_DIR/node-N.
kafka_node() {
    NODE_ID=$1
    NODE_PORT=$((KAFKA_PORT + NODE_PORT_STEP * (NODE_ID - 1)))
    NODE_CONTROLLER_PORT=$((CONTROLLER_PORT + NODE_PORT_STEP * (NODE_ID - 1)))
    NODE_SECURE_PORT=0
    ((SECURE_PORT == 0)) || NODE_SECURE_PORT=$((SECURE_PORT + NODE_PORT_STEP * (NODE_ID - 1)))
    if ((KAFKA_NODES == 1)); then NODE_DIR=$KAFKA_DIR; else NODE_DIR=$KAFKA_DIR/node-$NODE_ID; fi
    KAFKA_DATA=$NODE_DIR/data
    KAFKA_LOGS=$NODE_DIR/logs
    KAFKA_PID=$NODE_DIR/kafka.pid
    KAFKA_OUT=$KAFKA_LOGS/kafka.out
    KAFKA_CONF=$NODE_DIR/server.properties
}
kafka_node 1
KAFKA_BOOTSTRAP=""
KAFKA_SECURE_BOOTSTRAP=""
KAFKA_VOTERS=""
for ((n = 1; n <= KAFKA_NODES; n++)); do
    KAFKA_BOOTSTRAP+="${KAFKA_BOOTSTRAP:+,}127.0.0.1:$((KAFKA_PORT + NODE_PORT_STEP * (n - 1)))"
    KAFKA_SECURE_BOOTSTRAP+="${KAFKA_SECURE_BOOTSTRAP:+,}127.0.0.1:$((SECURE_PORT + NODE_PORT_STEP * (n - 1)))"
    KAFKA_VOTERS+="${KAFKA_VOTERS:+,}$n@127.0.0.1:$((CONTROLLER_PORT + NODE_PORT_STEP * (n - 1)))"
done
# Every partition on every node up to three; an acks=all write needs two of three.
if ((KAFKA_NODES >= 3)); then TOPIC_REPLICATION=3 TOPIC_MIN_INSYNC=2; else TOPIC_REPLICATION=1 TOPIC_MIN_INSYNC=1; fi
[[ $TIMEOUT =~ ^[0-9]+$ ]] || die "SANDAN_STACK_TIMEOUT='$TIMEOUT' is not a whole number of seconds"

rel() { printf '%s' "${1#"$ROOT"/}"; }

now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

port_open() { (: <"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# A pid from a pid file, only if that process is alive and is the program we expect
# (pid files outlive reboots and pids get reused).
live_pid() {
    local file=$1 pattern=$2 pid
    [[ -s $file ]] || return 1
    pid=$(<"$file")
    [[ $pid =~ ^[0-9]+$ ]] || return 1
    kill -0 "$pid" 2>/dev/null || return 1
    tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "$pattern" || return 1
    printf '%s' "$pid"
}
# The pid of the current node (kafka_node) when it runs.
kafka_pid() { live_pid "$KAFKA_PID" "$KAFKA_CONF"; }
# The live pid files of any Kafka node of this checkout, whichever SANDAN_KAFKA_NODES started it.
kafka_pid_files() {
    local file
    for file in "$KAFKA_DIR/kafka.pid" "$KAFKA_DIR"/node-*/kafka.pid; do
        [[ -f $file ]] && live_pid "$file" "$(dirname "$file")/server.properties" >/dev/null && printf '%s\n' "$file"
    done
    return 0
}
redis_pid() { live_pid "$REDIS_PID" "redis-server"; }
prometheus_pid() { live_pid "$PROMETHEUS_PID" "$PROMETHEUS_CONF"; }
registry_pid() { live_pid "$REGISTRY_PID" "$REGISTRY_JAR"; }

# SELECTED=the services named on the command line, in SERVICES order; all of them when none is.
select_services() {
    local name
    for name in "$@"; do
        [[ " ${SERVICES[*]} " == *" $name "* ]] || die "unknown service '$name'; the services are: ${SERVICES[*]}"
    done
    SELECTED=()
    for name in "${SERVICES[@]}"; do
        if (($# == 0)) || [[ " $* " == *" $name "* ]]; then SELECTED+=("$name"); fi
    done
}
selected() { [[ " ${SELECTED[*]} " == *" $1 "* ]]; }

# "kafka", "kafka and redis", "kafka, redis and prometheus"
join_names() {
    local text=$1
    shift
    while (($# > 1)); do text+=", $1"; shift; done
    (($# == 0)) || text+=" and $1"
    printf '%s' "$text"
}

lock() {
    mkdir -p "$LOCAL_DIR"
    # Two `up`s at once (parallel test sessions) would both format and start a broker.
    # Children get `9>&-` so a daemon never holds this lock after the script ends.
    exec 9>"$LOCAL_DIR/.stack.lock"
    flock 9
}

# ---------------------------------------------------------------------------- setup

apt_install() {
    local sudo=()
    if [[ $(id -u) -ne 0 ]]; then
        command -v sudo >/dev/null || die "need root or sudo to apt-get install $*"
        sudo=(sudo)
    fi
    command -v apt-get >/dev/null || die "$* missing and no apt-get here; install them by hand"
    say "installing $* with apt-get (once)"
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get -qq update >/dev/null
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get -qq install -y --no-install-recommends "$@" >/dev/null \
        || die "apt-get install $* failed"
}

jars_ok() { [[ -f $JARS_DIR/.complete ]]; }
registry_ok() { [[ -f $REGISTRY_BUILD/.complete ]]; }

cmd_setup() {
    local missing=()
    command -v redis-server >/dev/null || missing+=(redis-server)
    # faketime (libfaketime): the fault suite's clock-jump scenario runs a worker on a moved clock.
    command -v faketime >/dev/null || missing+=(faketime)
    # iptables: the fault suite's network scenarios drop and delay one worker's packets (tests/faults/netfault.py).
    command -v iptables >/dev/null || missing+=(iptables)
    # Debian's prometheus package brings promtool too, which the tests use to check the
    # configuration and the alert rules.
    if ! command -v prometheus >/dev/null || ! command -v promtool >/dev/null; then missing+=(prometheus); fi
    # docker-compose (Debian's) only checks docker-compose.yml in the tests (`config -q` needs no engine).
    command -v docker-compose >/dev/null || missing+=(docker-compose)
    command -v java >/dev/null || missing+=(openjdk-17-jre-headless)
    if { ! jars_ok || ! registry_ok; } && ! command -v mvn >/dev/null; then missing+=(maven); fi
    if ((${#missing[@]})); then apt_install "${missing[@]}"; fi

    if ! jars_ok; then
        local start out tmp=$JARS_DIR.partial
        start=$(now)
        say "fetching Kafka $KAFKA_VERSION jars from Maven Central into $(rel "$JARS_DIR") (once, ~55 MB)"
        rm -rf "$tmp"
        # Into a scratch folder first, so an interrupted download is never taken for complete.
        # Output only on failure: even -q leaves colour escapes behind.
        out=$(mvn -q -B -Dstyle.color=never -f "$ROOT/deploy/kafka/pom.xml" dependency:copy-dependencies \
            -Dkafka.version="$KAFKA_VERSION" -DoutputDirectory="$tmp" 2>&1) \
            || die "mvn could not fetch Kafka $KAFKA_VERSION (is SANDAN_KAFKA_VERSION a released version? is Maven Central reachable?):"$'\n'"$out"
        ls "$tmp"/kafka_2.13-"$KAFKA_VERSION".jar >/dev/null 2>&1 || die "mvn finished but $(rel "$tmp") has no kafka_2.13 jar"
        rm -rf "$JARS_DIR"
        mv "$tmp" "$JARS_DIR"
        touch "$JARS_DIR/.complete"
        say "fetched $(find "$JARS_DIR" -name '*.jar' | wc -l) jars in $(since "$start") s"
    fi
    if ! registry_ok; then
        local start out tmp=$REGISTRY_BUILD.partial
        start=$(now)
        say "building Apicurio Registry $REGISTRY_VERSION from Maven Central into $(rel "$REGISTRY_BUILD") (once, ~130 MB)"
        rm -rf "$tmp"
        # The registry's jar is classes only; the Quarkus plugin assembles the runnable app.
        # Its classes carry no index, hence index-dependency.
        out=$(mvn -q -B -Dstyle.color=never -s "$ROOT/deploy/schema-registry/settings.xml" \
            -f "$ROOT/deploy/schema-registry/pom.xml" package -Dsandan.build="$tmp" \
            -Dquarkus.index-dependency.registry.group-id=io.apicurio \
            -Dquarkus.index-dependency.registry.artifact-id=apicurio-registry-app 2>&1) \
            || die "mvn could not build the schema registry (is Maven Central reachable?):"$'\n'"$out"
        [[ -f $tmp/sandan-schema-registry-1-runner.jar ]] || die "mvn finished but $(rel "$tmp") has no runner jar"
        rm -rf "$REGISTRY_BUILD"
        mv "$tmp" "$REGISTRY_BUILD"
        touch "$REGISTRY_BUILD/.complete"
        say "built the schema registry in $(since "$start") s"
    fi
}

# ---------------------------------------------------------------------------- kafka

# A short-lived JVM from the same jars; tuned for start-up time, not throughput.
kafka_tool() {
    java -Xmx128m -XX:+UseSerialGC -XX:TieredStopAtLevel=1 -cp "$JARS_DIR/*" "$@"
}

# Ready means the broker answers a metadata request and lists itself, unfenced. On three
# nodes: all three are listed unfenced and the controller quorum reports a leader. With
# SANDAN_KAFKA_SECURE_PORT, also every node through its SASL_SSL listener as the SCRAM user.
kafka_answers() {
    kafka_plain_answers || return 1
    ((SECURE_PORT == 0)) || kafka_secure_answers
}

kafka_plain_answers() {
    local n unfenced
    for ((n = 0; n < KAFKA_NODES; n++)); do
        port_open $((KAFKA_PORT + NODE_PORT_STEP * n)) || return 1
    done
    if ((KAFKA_NODES == 1)); then
        kafka_tool org.apache.kafka.tools.BrokerApiVersionsCommand \
            --bootstrap-server "127.0.0.1:$KAFKA_PORT" 2>/dev/null | grep -q 'isFenced: false'
        return
    fi
    unfenced=$(kafka_tool org.apache.kafka.tools.BrokerApiVersionsCommand \
        --bootstrap-server "$KAFKA_BOOTSTRAP" 2>/dev/null | grep -c 'isFenced: false') || true
    ((unfenced == KAFKA_NODES)) || return 1
    kafka_tool org.apache.kafka.tools.MetadataQuorumCommand --bootstrap-server "$KAFKA_BOOTSTRAP" \
        describe --status 2>/dev/null | grep -Eq '^LeaderId: +[0-9]+$'
}

# The SASL_SSL listener's files, made once (a cluster shares them): a test CA, the broker's
# certificate for 127.0.0.1 and localhost with its key (unencrypted PKCS#8, as Kafka's PEM key
# store reads it), the SCRAM user's random password and a client.properties for Java tools.
kafka_secure_files() {
    [[ -f $SECURE_DIR/.complete ]] && return
    command -v openssl >/dev/null || die "SANDAN_KAFKA_SECURE_PORT needs openssl for the test certificates"
    local tmp=$SECURE_DIR.partial out
    rm -rf "$tmp"
    mkdir -p "$tmp"
    chmod 700 "$tmp"
    printf '%s\n' "basicConstraints=critical,CA:FALSE" "keyUsage=critical,digitalSignature,keyEncipherment" \
        "extendedKeyUsage=serverAuth" "subjectAltName=IP:127.0.0.1,DNS:localhost" \
        "authorityKeyIdentifier=keyid,issuer" >"$tmp/broker.ext"
    out=$({
        openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=sandan local test CA" \
            -keyout "$tmp/ca.key" -out "$tmp/ca.pem" &&
        openssl req -newkey rsa:2048 -nodes -subj "/CN=127.0.0.1" -keyout "$tmp/broker.key" -out "$tmp/broker.csr" &&
        openssl x509 -req -in "$tmp/broker.csr" -CA "$tmp/ca.pem" -CAkey "$tmp/ca.key" -CAcreateserial \
            -days 3650 -extfile "$tmp/broker.ext" -out "$tmp/broker.pem" &&
        openssl pkcs8 -topk8 -nocrypt -in "$tmp/broker.key" -out "$tmp/broker.pk8"
    } 2>&1) || die "openssl could not make the test certificates:"$'\n'"$out"
    cat "$tmp/broker.pk8" "$tmp/broker.pem" "$tmp/ca.pem" >"$tmp/broker-keystore.pem"
    (umask 077 && openssl rand -hex 24 >"$tmp/$SCRAM_USER.password")
    (umask 077 && cat >"$tmp/client.properties" <<EOF
# Written by scripts/stack.sh: Java tools (--command-config) on the SASL_SSL listener.
security.protocol=SASL_SSL
sasl.mechanism=SCRAM-SHA-512
sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username="$SCRAM_USER" password="$(<"$tmp/$SCRAM_USER.password")";
ssl.truststore.type=PEM
ssl.truststore.location=$SECURE_DIR/ca.pem
EOF
    )
    rm -f "$tmp/broker.csr" "$tmp/broker.key" "$tmp/ca.srl"
    rm -rf "$SECURE_DIR"
    mv "$tmp" "$SECURE_DIR"
    touch "$SECURE_DIR/.complete"
}

# The SCRAM user of the SASL_SSL listener, (re)set through the PLAINTEXT listener: it works on a
# data folder formatted before the listener existed, and a second time changes nothing. The
# test password is on the tool's command line for its second of life (--add-config-file does
# not take SCRAM credentials); never reuse this for a real one.
KAFKA_SCRAM_SET=""
kafka_scram_user() {
    local out
    out=$(kafka_tool kafka.admin.ConfigCommand --bootstrap-server "$KAFKA_BOOTSTRAP" --alter \
        --add-config "SCRAM-SHA-512=[iterations=8192,password=$(<"$SECURE_DIR/$SCRAM_USER.password")]" \
        --entity-type users --entity-name "$SCRAM_USER" 2>&1) \
        || die "could not set the SCRAM user $SCRAM_USER:"$'\n'"${out//$(<"$SECURE_DIR/$SCRAM_USER.password")/<password>}"
    KAFKA_SCRAM_SET=1
}

kafka_secure_answers() {
    local n unfenced
    for ((n = 0; n < KAFKA_NODES; n++)); do
        port_open $((SECURE_PORT + NODE_PORT_STEP * n)) || return 1
    done
    [[ -n $KAFKA_SCRAM_SET ]] || kafka_scram_user
    unfenced=$(kafka_tool org.apache.kafka.tools.BrokerApiVersionsCommand --bootstrap-server "$KAFKA_SECURE_BOOTSTRAP" \
        --command-config "$SECURE_DIR/client.properties" 2>/dev/null | grep -c 'isFenced: false') || true
    ((unfenced == KAFKA_NODES))
}

# Writes the current node's (kafka_node) server.properties; kafka_render_config writes every node's.
kafka_render_node_config() {
    local secure=()
    mkdir -p "$KAFKA_DATA" "$KAFKA_LOGS"
    if ((NODE_SECURE_PORT)); then
        kafka_secure_files
        secure=(-e "s|^listeners=.*|&,SASL_SSL://127.0.0.1:$NODE_SECURE_PORT|"
            -e "s|^advertised.listeners=.*|&,SASL_SSL://127.0.0.1:$NODE_SECURE_PORT|"
            -e "s|^listener.security.protocol.map=.*|&,SASL_SSL:SASL_SSL|")
    fi
    sed "${secure[@]}" -e "s|@NODE_ID@|$NODE_ID|g" \
        -e "s|@VOTERS@|$KAFKA_VOTERS|g" \
        -e "s|@PORT@|$NODE_PORT|g" \
        -e "s|@CONTROLLER_PORT@|$NODE_CONTROLLER_PORT|g" \
        -e "s|@DATA_DIR@|$KAFKA_DATA|g" \
        -e "s|@REPLICATION@|$TOPIC_REPLICATION|g" \
        -e "s|@MIN_ISR@|$TOPIC_MIN_INSYNC|g" \
        "$ROOT/deploy/kafka/server.properties.template" >"$KAFKA_CONF.tmp"
    if ((NODE_SECURE_PORT)); then
        cat >>"$KAFKA_CONF.tmp" <<EOF

# SASL_SSL listener (SANDAN_KAFKA_SECURE_PORT): TLS with the test CA's broker certificate,
# SCRAM-SHA-512 logins; brokers and controllers keep talking PLAINTEXT on loopback.
listener.name.sasl_ssl.sasl.enabled.mechanisms=SCRAM-SHA-512
listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
listener.name.sasl_ssl.ssl.keystore.type=PEM
listener.name.sasl_ssl.ssl.keystore.location=$SECURE_DIR/broker-keystore.pem
EOF
    fi
    mv "$KAFKA_CONF.tmp" "$KAFKA_CONF"
}

kafka_render_config() {
    local n
    for ((n = 1; n <= KAFKA_NODES; n++)); do kafka_node "$n"; kafka_render_node_config; done
    kafka_node 1
}

kafka_format_once() {
    # meta.properties is the broker's own mark of a formatted log dir; the data it guards
    # must survive down/up, so never format twice. Every node of a cluster gets the same id.
    [[ -f $KAFKA_DATA/meta.properties ]] && return
    local id_file=$KAFKA_DIR/cluster.id out
    if [[ ! -s $id_file ]]; then
        mkdir -p "$KAFKA_DIR"
        kafka_tool kafka.tools.StorageTool random-uuid >"$id_file.tmp"
        mv "$id_file.tmp" "$id_file"
    fi
    out=$(kafka_tool -Dlog4j2.configurationFile="$ROOT/deploy/kafka/log4j2.xml" -Dkafka.logs.dir="$KAFKA_LOGS" \
        kafka.tools.StorageTool format --ignore-formatted -t "$(<"$id_file")" -c "$KAFKA_CONF" 2>&1) \
        || die "formatting $(rel "$KAFKA_DATA") failed:"$'\n'"$out"
}

# The pids of the nodes this run started, and their log folders (for error reports).
KAFKA_STARTED=""
KAFKA_STARTED_LOGS=()
kafka_up() {
    local n other
    # One node and the cluster share ports and the data folder's parent: never both at once.
    for other in $(kafka_pid_files); do
        if { ((KAFKA_NODES == 1)) && [[ $other == */node-*/kafka.pid ]]; } \
            || { ((KAFKA_NODES > 1)) && [[ $other == "$KAFKA_DIR/kafka.pid" ]]; }; then
            die "Kafka of this checkout runs with another SANDAN_KAFKA_NODES ($(rel "$other")); stop it first (make down SERVICES=kafka; data is kept)"
        fi
    done
    for ((n = 1; n <= KAFKA_NODES; n++)); do kafka_node "$n"; kafka_node_up; done
    kafka_node 1
}

kafka_node_up() {
    local pid name=kafka
    ((KAFKA_NODES == 1)) || name="kafka node $NODE_ID"
    if pid=$(kafka_pid); then
        if ((NODE_SECURE_PORT)) && ! grep -q "^listeners=.*SASL_SSL://127.0.0.1:$NODE_SECURE_PORT" "$KAFKA_CONF"; then
            die "$name (pid $pid) runs without the SASL_SSL listener on $NODE_SECURE_PORT that SANDAN_KAFKA_SECURE_PORT asks for; restart it (make down SERVICES=kafka; data is kept)"
        fi
        echo "$name: already running, 127.0.0.1:$NODE_PORT (pid $pid)"
        return
    fi
    if port_open "$NODE_PORT"; then
        ((KAFKA_NODES == 1)) || die "127.0.0.1:$NODE_PORT (node $NODE_ID) is in use by another program; free it or set SANDAN_KAFKA_PORT"
        kafka_plain_answers || die "127.0.0.1:$KAFKA_PORT is in use by something that is not a Kafka broker; free it or set SANDAN_KAFKA_PORT"
        echo "kafka: already running, 127.0.0.1:$KAFKA_PORT (not started by this checkout; left alone)"
        return
    fi
    port_open "$NODE_CONTROLLER_PORT" && die "controller port 127.0.0.1:$NODE_CONTROLLER_PORT is in use; free it or set SANDAN_KAFKA_CONTROLLER_PORT"
    if ((NODE_SECURE_PORT)) && port_open "$NODE_SECURE_PORT"; then
        die "SASL_SSL port 127.0.0.1:$NODE_SECURE_PORT is in use; free it or set SANDAN_KAFKA_SECURE_PORT"
    fi
    kafka_render_node_config
    kafka_format_once
    # setsid: the broker must outlive the shell, make and the test session that started it
    # and must not get their Ctrl-C. The inner bash writes its own pid, then becomes java.
    # shellcheck disable=SC2016  # $$ and $@ belong to the inner bash
    setsid bash -c 'echo $$ >"$1"; shift; exec "$@"' _ "$KAFKA_PID" \
        java -Xms"$KAFKA_HEAP" -Xmx"$KAFKA_HEAP" \
        -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:InitiatingHeapOccupancyPercent=35 \
        -XX:+ExplicitGCInvokesConcurrent -Djava.awt.headless=true \
        -Dlog4j2.configurationFile="$ROOT/deploy/kafka/log4j2.xml" -Dkafka.logs.dir="$KAFKA_LOGS" \
        -cp "$JARS_DIR/*" kafka.Kafka "$KAFKA_CONF" \
        >"$KAFKA_OUT" 2>&1 </dev/null 9>&- &
    local i
    for i in $(seq 50); do
        pid=$(kafka_pid) && break
        sleep 0.1
    done
    [[ -n ${pid:-} ]] || { show_log "$KAFKA_OUT"; die "$name did not start"; }
    KAFKA_STARTED+="${KAFKA_STARTED:+ }$pid"
    KAFKA_STARTED_LOGS+=("$KAFKA_LOGS")
}

# ---------------------------------------------------------------------------- redis

redis_answers() {
    [[ $(redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping 2>/dev/null) == PONG ]]
}

redis_render_config() {
    mkdir -p "$REDIS_DIR"
    cat >"$REDIS_CONF.tmp" <<EOF
# Written by scripts/stack.sh on every start; edit the script, not this file.
bind 127.0.0.1
protected-mode yes
port $REDIS_PORT
daemonize yes
pidfile "$REDIS_PID"
logfile "$REDIS_LOG"
dir "$REDIS_DIR"
# Guarantee balances and annual quotas must survive a restart: every write goes to the
# append-only file, fsynced once a second.
appendonly yes
appendfsync everysec
# The AOF is the durable copy; periodic RDB snapshots would only add forks.
save ""
EOF
    mv "$REDIS_CONF.tmp" "$REDIS_CONF"
}

REDIS_STARTED=""
redis_up() {
    local pid
    if pid=$(redis_pid); then
        echo "redis: already running, 127.0.0.1:$REDIS_PORT (pid $pid)"
        return
    fi
    if port_open "$REDIS_PORT"; then
        redis_answers || die "127.0.0.1:$REDIS_PORT is in use by something that does not answer Redis PING; free it or set SANDAN_REDIS_PORT"
        echo "redis: already running, 127.0.0.1:$REDIS_PORT (not started by this checkout; left alone)"
        return
    fi
    redis_render_config
    rm -f "$REDIS_PID"
    redis-server "$REDIS_CONF" 9>&- || { show_log "$REDIS_LOG"; die "redis-server did not start"; }
    local i
    for i in $(seq 50); do
        pid=$(redis_pid) && break
        sleep 0.1
    done
    [[ -n ${pid:-} ]] || { show_log "$REDIS_LOG"; die "redis-server did not write $(rel "$REDIS_PID")"; }
    REDIS_STARTED=$pid
}

# ---------------------------------------------------------------------------- prometheus

# `http_ok PORT PATH`: GET on 127.0.0.1 answers 200. Plain bash, as there may be no curl;
# HTTP/1.0, so the server closes the connection after its answer.
http_ok() {
    local status
    port_open "$1" || return 1
    # shellcheck disable=SC2016  # $1 and $2 belong to the inner bash
    status=$(timeout 3 bash -c 'exec 3<>"/dev/tcp/127.0.0.1/$1" &&
        printf "GET %s HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n" "$2" >&3 && head -n 1 <&3' _ "$1" "$2" 2>/dev/null) \
        || return 1
    [[ $status == "HTTP/1."[01]" 200"* ]]
}

# Ready means /-/ready answers 200: the TSDB is open and the configuration loaded.
prometheus_answers() { http_ok "$PROMETHEUS_PORT" /-/ready; }

# deploy/prometheus/prometheus.yml with each job's 127.0.0.1 target on the port of its
# setting, SANDAN_<JOB>_METRICS_PORT (order-match: SANDAN_ORDER_MATCH_METRICS_PORT), and the
# rule files as absolute paths into deploy/prometheus (Prometheus resolves relative ones
# against the rendered file's folder), so an edited alerts.yml needs only a reload (SIGHUP).
prometheus_render_config() {
    local jobs job setting_name port ports=""
    mkdir -p "$PROMETHEUS_DATA"
    jobs=$(sed -n 's/^ *- job_name: *\([A-Za-z0-9_-]*\) *$/\1/p' "$PROMETHEUS_SOURCE")
    [[ -n $jobs ]] || die "no job_name in $(rel "$PROMETHEUS_SOURCE")"
    for job in $jobs; do
        setting_name=SANDAN_$(tr 'a-z-' 'A-Z_' <<<"$job")_METRICS_PORT
        port=$(setting "$setting_name")
        [[ $port =~ ^[0-9]+$ ]] || die "$setting_name='$port' is not a port number"
        ports+="$job=$port "
    done
    awk -v ports="$ports" -v dir="$ROOT/deploy/prometheus" -v source="$(rel "$PROMETHEUS_SOURCE")" '
        BEGIN {
            n = split(ports, pairs, " ")
            for (i = 1; i <= n; i++) { split(pairs[i], kv, "="); port[kv[1]] = kv[2] }
            print "# Written by scripts/stack.sh from " source " on every start; edit that file, not this one."
        }
        /^[^ #]/ { section = $1 }
        /^ *- job_name:/ { job = $3 }
        section == "rule_files:" && /^ *- / && $2 !~ /^\// { sub(/- /, "- " dir "/") }
        section == "scrape_configs:" && /targets:/ { gsub(/127\.0\.0\.1:[0-9]+/, "127.0.0.1:" port[job]) }
        { print }
    ' "$PROMETHEUS_SOURCE" >"$PROMETHEUS_CONF.tmp"
    mv "$PROMETHEUS_CONF.tmp" "$PROMETHEUS_CONF"
}

PROMETHEUS_STARTED=""
prometheus_up() {
    local pid
    if pid=$(prometheus_pid); then
        echo "prometheus: already running, 127.0.0.1:$PROMETHEUS_PORT (pid $pid)"
        return
    fi
    if port_open "$PROMETHEUS_PORT"; then
        prometheus_answers || die "127.0.0.1:$PROMETHEUS_PORT is in use by something that is not a ready Prometheus; free it or set SANDAN_PROMETHEUS_PORT"
        echo "prometheus: already running, 127.0.0.1:$PROMETHEUS_PORT (not started by this checkout; left alone)"
        return
    fi
    command -v prometheus >/dev/null || die "prometheus is not installed; run scripts/stack.sh setup"
    prometheus_render_config
    # Detached like the broker (see kafka_up). A week of 5 s scrapes of four services is a few
    # hundred MB at most; the retention keeps a laptop's disk from filling up.
    # shellcheck disable=SC2016  # $$ and $@ belong to the inner bash
    setsid bash -c 'echo $$ >"$1"; shift; exec "$@"' _ "$PROMETHEUS_PID" \
        prometheus --config.file="$PROMETHEUS_CONF" --storage.tsdb.path="$PROMETHEUS_DATA" \
        --storage.tsdb.retention.time=7d --web.listen-address="127.0.0.1:$PROMETHEUS_PORT" \
        >"$PROMETHEUS_LOG" 2>&1 </dev/null 9>&- &
    local i
    for i in $(seq 50); do
        pid=$(prometheus_pid) && break
        sleep 0.1
    done
    [[ -n ${pid:-} ]] || { show_log "$PROMETHEUS_LOG"; die "prometheus did not start"; }
    PROMETHEUS_STARTED=$pid
}

# ---------------------------------------------------------------------------- registry

# Ready means the Confluent-compatible API answers 200 (storage open).
registry_answers() { http_ok "$REGISTRY_PORT" /apis/ccompat/v7/subjects; }

registry_render_config() { mkdir -p "$REGISTRY_DIR"; }

REGISTRY_STARTED=""
registry_up() {
    local pid
    if pid=$(registry_pid); then
        echo "registry: already running, 127.0.0.1:$REGISTRY_PORT (pid $pid)"
        return
    fi
    if port_open "$REGISTRY_PORT"; then
        registry_answers || die "127.0.0.1:$REGISTRY_PORT is in use by something that is not a schema registry; free it or set SANDAN_SCHEMA_REGISTRY_PORT"
        echo "registry: already running, 127.0.0.1:$REGISTRY_PORT (not started by this checkout; left alone)"
        return
    fi
    registry_ok || die "schema registry not built; run scripts/stack.sh setup"
    registry_render_config
    # Schemas live in an H2 file under $REGISTRY_DIR: ids written into records must survive a
    # restart. Detached like the broker (see kafka_up); a small serial-GC heap, it serves a few
    # look-ups per process start.
    # shellcheck disable=SC2016  # $$ and $@ belong to the inner bash
    REGISTRY_DATASOURCE_URL="jdbc:h2:file:$REGISTRY_DIR/registry" \
    setsid bash -c 'echo $$ >"$1"; shift; exec "$@"' _ "$REGISTRY_PID" \
        java -Xms"$REGISTRY_HEAP" -Xmx"$REGISTRY_HEAP" -XX:+UseSerialGC -XX:TieredStopAtLevel=1 \
        -Dquarkus.http.host=127.0.0.1 -Dquarkus.http.port="$REGISTRY_PORT" \
        -Dquarkus.datasource.jdbc.min-size=1 -Dquarkus.datasource.jdbc.initial-size=1 \
        -jar "$REGISTRY_JAR" >"$REGISTRY_LOG" 2>&1 </dev/null 9>&- &
    local i
    for i in $(seq 50); do
        pid=$(registry_pid) && break
        sleep 0.1
    done
    [[ -n ${pid:-} ]] || { show_log "$REGISTRY_LOG"; die "the schema registry did not start"; }
    REGISTRY_STARTED=$pid
}

# ---------------------------------------------------------------------------- wait

show_log() {
    local file=$1
    [[ -s $file ]] || return 0
    echo "---- last 30 lines of $(rel "$file") ----" >&2
    tail -n 30 "$file" >&2
    echo "----" >&2
}

cmd_wait() {
    select_services "$@"
    local services=("${SELECTED[@]}") service start deadline answered=" " all next_note
    if selected kafka; then jars_ok || die "Kafka jars missing; run scripts/stack.sh setup"; fi
    if selected kafka && ((SECURE_PORT)) && [[ ! -f $SECURE_DIR/.complete ]]; then
        die "no SASL_SSL files in $(rel "$SECURE_DIR"); start Kafka with SANDAN_KAFKA_SECURE_PORT set (scripts/stack.sh up kafka)"
    fi
    if selected registry; then registry_ok || die "schema registry not built; run scripts/stack.sh setup"; fi
    start=$(now)
    deadline=$((SECONDS + TIMEOUT))
    next_note=$((SECONDS + 10))
    while :; do
        all=1
        for service in "${services[@]}"; do
            [[ $answered == *" $service "* ]] && continue
            if "${service}_answers"; then answered+="$service "; else all=""; fi
        done
        [[ -n $all ]] && break
        # A server that died will not answer later either: report now, not after the timeout.
        kafka_check_started
        if [[ -n $PROMETHEUS_STARTED ]] && ! kill -0 "$PROMETHEUS_STARTED" 2>/dev/null; then
            show_log "$PROMETHEUS_LOG"
            die "prometheus (pid $PROMETHEUS_STARTED) exited during start-up"
        fi
        if [[ -n $REGISTRY_STARTED ]] && ! kill -0 "$REGISTRY_STARTED" 2>/dev/null; then
            show_log "$REGISTRY_LOG"
            die "the schema registry (pid $REGISTRY_STARTED) exited during start-up"
        fi
        if ((SECONDS >= deadline)); then
            for service in "${services[@]}"; do
                [[ $answered == *" $service "* ]] || "${service}_timed_out"
            done
            exit 1
        fi
        if ((SECONDS >= next_note)); then
            # A broker holding many partitions loads their logs for a while before it answers.
            say "still waiting for$(for service in "${services[@]}"; do
                [[ $answered == *" $service "* ]] || printf ' %s' "$service"; done) ($(since "$start") s of $TIMEOUT s)"
            next_note=$((SECONDS + 10))
        fi
        sleep 0.5
    done
    local verb=answer
    ((${#services[@]} > 1)) || verb=answers
    say "$(join_names "${services[@]}") $verb (waited $(since "$start") s)"
}

kafka_check_started() {
    local pids=($KAFKA_STARTED) i
    for i in "${!pids[@]}"; do
        if ! kill -0 "${pids[$i]}" 2>/dev/null; then
            show_log "${KAFKA_STARTED_LOGS[$i]}/kafka.out"; show_log "${KAFKA_STARTED_LOGS[$i]}/server.log"
            die "kafka (pid ${pids[$i]}) exited during start-up"
        fi
    done
}

kafka_timed_out() {
    local n
    for ((n = 1; n <= KAFKA_NODES; n++)); do
        kafka_node "$n"; show_log "$KAFKA_OUT"; show_log "$KAFKA_LOGS/server.log"
    done
    if ((KAFKA_NODES == 1)); then
        echo "stack: error: kafka did not answer a metadata request on 127.0.0.1:$KAFKA_PORT within $TIMEOUT s" >&2
    else
        echo "stack: error: the $KAFKA_NODES Kafka nodes ($KAFKA_BOOTSTRAP) did not all answer unfenced with a quorum leader within $TIMEOUT s" >&2
    fi
}
redis_timed_out() {
    show_log "$REDIS_LOG"
    echo "stack: error: redis did not answer PING on 127.0.0.1:$REDIS_PORT within $TIMEOUT s" >&2
}
registry_timed_out() {
    show_log "$REGISTRY_LOG"
    echo "stack: error: the schema registry did not answer on http://127.0.0.1:$REGISTRY_PORT/apis/ccompat/v7 within $TIMEOUT s" >&2
}
prometheus_timed_out() {
    show_log "$PROMETHEUS_LOG"
    echo "stack: error: prometheus did not report ready on http://127.0.0.1:$PROMETHEUS_PORT/-/ready within $TIMEOUT s" >&2
}

# ---------------------------------------------------------------------------- commands

cmd_up() {
    select_services "$@"
    local services=("${SELECTED[@]}") service start
    start=$(now)
    lock
    cmd_setup
    # All start in the background and are waited for together: Redis and Prometheus are up
    # long before the broker, so waiting costs only the broker's start-up.
    for service in "${services[@]}"; do "${service}_up"; done
    cmd_wait "${services[@]}"
    if [[ -n $KAFKA_STARTED ]]; then
        if ((KAFKA_NODES == 1)); then
            echo "kafka: started, 127.0.0.1:$KAFKA_PORT (pid $KAFKA_STARTED, logs in $(rel "$KAFKA_LOGS"))"
        else
            echo "kafka: started pids $KAFKA_STARTED; $KAFKA_NODES nodes on $KAFKA_BOOTSTRAP (logs in $(rel "$KAFKA_DIR")/node-N/logs)"
            say "sandan's processes need the cluster's settings: eval \"\$(scripts/stack.sh env)\""
        fi
    fi
    [[ -z $REDIS_STARTED ]] || echo "redis: started, 127.0.0.1:$REDIS_PORT (pid $REDIS_STARTED, log $(rel "$REDIS_LOG"))"
    [[ -z $PROMETHEUS_STARTED ]] || echo "prometheus: started, http://127.0.0.1:$PROMETHEUS_PORT (pid $PROMETHEUS_STARTED, log $(rel "$PROMETHEUS_LOG"))"
    [[ -z $REGISTRY_STARTED ]] || echo "registry: started, http://127.0.0.1:$REGISTRY_PORT/apis/ccompat/v7 (pid $REGISTRY_STARTED, log $(rel "$REGISTRY_LOG"))"
    say "up in $(since "$start") s"
}

stop_pid() {
    local name=$1 pid=$2 i
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < STOP_TIMEOUT * 10; i++)); do
        kill -0 "$pid" 2>/dev/null || { echo "$name: stopped (pid $pid)"; return; }
        sleep 0.1
    done
    echo "$name: pid $pid ignored SIGTERM for $STOP_TIMEOUT s; sending SIGKILL" >&2
    kill -KILL "$pid" 2>/dev/null || true
    while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done
    echo "$name: killed (pid $pid)"
}

# Every node of this checkout, whichever SANDAN_KAFKA_NODES started it; all get SIGTERM at
# once, as a node that stops last has no quorum left to report its shutdown to.
kafka_down() {
    local files file pids=() pid
    files=$(kafka_pid_files)
    if [[ -z $files ]]; then
        if port_open "$KAFKA_PORT"; then
            echo "kafka: not started by this checkout (something answers on 127.0.0.1:$KAFKA_PORT); left alone"
        else
            echo "kafka: not running"
        fi
    elif [[ $files == "$KAFKA_DIR/kafka.pid" ]]; then
        stop_pid kafka "$(<"$files")"
    else
        for file in $files; do
            pid=$(<"$file")
            kill -TERM "$pid" 2>/dev/null || true
            pids+=("$pid")
        done
        for pid in "${pids[@]}"; do stop_pid kafka "$pid"; done
    fi
    rm -f "$KAFKA_DIR/kafka.pid" "$KAFKA_DIR"/node-*/kafka.pid
}

redis_down() {
    local pid
    if pid=$(redis_pid); then
        stop_pid redis "$pid"
    elif port_open "$REDIS_PORT"; then
        echo "redis: not started by this checkout (something answers on 127.0.0.1:$REDIS_PORT); left alone"
    else
        echo "redis: not running"
    fi
    rm -f "$REDIS_PID"
}

prometheus_down() {
    local pid
    if pid=$(prometheus_pid); then
        stop_pid prometheus "$pid"
    elif port_open "$PROMETHEUS_PORT"; then
        echo "prometheus: not started by this checkout (something answers on 127.0.0.1:$PROMETHEUS_PORT); left alone"
    else
        echo "prometheus: not running"
    fi
    rm -f "$PROMETHEUS_PID"
}

registry_down() {
    local pid
    if pid=$(registry_pid); then
        stop_pid registry "$pid"
    elif port_open "$REGISTRY_PORT"; then
        echo "registry: not started by this checkout (something answers on 127.0.0.1:$REGISTRY_PORT); left alone"
    else
        echo "registry: not running"
    fi
    rm -f "$REGISTRY_PID"
}

# down [kafka] [redis] [prometheus] [registry]: naming services lets a caller stop only what it started itself.
cmd_down() {
    select_services "$@"
    local service
    lock
    # Prometheus first: it only watches the others. Kafka before Redis: it holds client
    # connections open; Redis has nothing that depends on Kafka.
    for service in prometheus registry kafka redis; do
        if selected "$service"; then "${service}_down"; fi
    done
    return 0
}

cmd_status() {
    local pid rc=0
    local n
    for ((n = 1; n <= KAFKA_NODES; n++)); do
        kafka_node "$n"
        local where="127.0.0.1:$NODE_PORT"
        ((KAFKA_NODES == 1)) || where+=" (node $n of $KAFKA_NODES)"
        if pid=$(kafka_pid); then
            echo "kafka: running, pid $pid, $where"
        elif port_open "$NODE_PORT" && [[ -n $(kafka_pid_files) ]]; then
            echo "kafka: running with another SANDAN_KAFKA_NODES of this checkout, $where"
        elif port_open "$NODE_PORT"; then
            echo "kafka: running, not started by this checkout, $where"
        else
            echo "kafka: stopped, $where"; rc=3
        fi
    done
    kafka_node 1
    if pid=$(redis_pid); then
        echo "redis: running, pid $pid, 127.0.0.1:$REDIS_PORT"
    elif port_open "$REDIS_PORT"; then
        echo "redis: running, not started by this checkout, 127.0.0.1:$REDIS_PORT"
    else
        echo "redis: stopped, 127.0.0.1:$REDIS_PORT"; rc=3
    fi
    if pid=$(prometheus_pid); then
        echo "prometheus: running, pid $pid, 127.0.0.1:$PROMETHEUS_PORT"
    elif port_open "$PROMETHEUS_PORT"; then
        echo "prometheus: running, not started by this checkout, 127.0.0.1:$PROMETHEUS_PORT"
    else
        echo "prometheus: stopped, 127.0.0.1:$PROMETHEUS_PORT"; rc=3
    fi
    if pid=$(registry_pid); then
        echo "registry: running, pid $pid, 127.0.0.1:$REGISTRY_PORT"
    elif port_open "$REGISTRY_PORT"; then
        echo "registry: running, not started by this checkout, 127.0.0.1:$REGISTRY_PORT"
    else
        echo "registry: stopped, 127.0.0.1:$REGISTRY_PORT"; rc=3
    fi
    return $rc
}

# config [SERVICES]: write the configuration files `up` would start the servers with, and
# name them (nothing is started; a running server keeps the configuration it started with).
cmd_config() {
    select_services "$@"
    local service n
    lock
    for service in "${SELECTED[@]}"; do "${service}_render_config"; done
    if selected kafka; then
        for ((n = 1; n <= KAFKA_NODES; n++)); do kafka_node "$n"; echo "kafka: $KAFKA_CONF"; done
    fi
    selected redis && echo "redis: $REDIS_CONF"
    selected prometheus && echo "prometheus: $PROMETHEUS_CONF"
    selected registry && echo "registry: $REGISTRY_DIR (no configuration file; settings on its command line)"
    return 0
}

cmd_reset() {
    cmd_down
    # Only the folders this script owns: SANDAN_LOCAL_DIR may point anywhere.
    rm -rf "$KAFKA_DIR" "$REDIS_DIR" "$PROMETHEUS_DIR" "$REGISTRY_DIR"
    say "deleted $(rel "$KAFKA_DIR"), $(rel "$REDIS_DIR"), $(rel "$PROMETHEUS_DIR") and $(rel "$REGISTRY_DIR")"
}

# The client settings that go with this stack's Kafka: sandan's processes read them
# (eval "$(scripts/stack.sh env)"); on three nodes every node is a bootstrap server. With
# SANDAN_KAFKA_SECURE_PORT they point at the SASL_SSL listeners, as the SCRAM user.
cmd_env() {
    if ((SECURE_PORT == 0)); then
        echo "export SANDAN_KAFKA_BOOTSTRAP=$KAFKA_BOOTSTRAP"
    else
        echo "export SANDAN_KAFKA_BOOTSTRAP=$KAFKA_SECURE_BOOTSTRAP"
    fi
    echo "export SANDAN_TOPIC_REPLICATION=$TOPIC_REPLICATION"
    echo "export SANDAN_TOPIC_MIN_INSYNC=$TOPIC_MIN_INSYNC"
    if ((SECURE_PORT)); then
        echo "export SANDAN_KAFKA_SECURITY_PROTOCOL=SASL_SSL"
        printf 'export SANDAN_KAFKA_SSL_CAFILE=%q\n' "$SECURE_DIR/ca.pem"
        echo "export SANDAN_KAFKA_SASL_MECHANISM=SCRAM-SHA-512"
        echo "export SANDAN_KAFKA_SASL_USERNAME=$SCRAM_USER"
        printf 'export SANDAN_KAFKA_SASL_PASSWORD_FILE=%q\n' "$SECURE_DIR/$SCRAM_USER.password"
    fi
}

case ${1:-} in
    setup) lock; cmd_setup ;;
    up) shift; cmd_up "$@" ;;
    down) shift; cmd_down "$@" ;;
    status) cmd_status ;;
    wait) shift; cmd_wait "$@" ;;
    config) shift; cmd_config "$@" ;;
    reset) cmd_reset ;;
    env) cmd_env ;;
    *) echo "usage: $0 {setup|up|down|status|wait|config|reset|env} [kafka|redis|prometheus|registry]..." >&2; exit 2 ;;
esac
