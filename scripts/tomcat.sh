#!/usr/bin/env bash
# Private Tomcat 10 instances for pounce's demo, tests and benchmarks.
#
#   scripts/tomcat.sh install
#       installs Debian's tomcat10 with apt-get when it is missing.
#   scripts/tomcat.sh start DIR ROUTE HTTP_PORT AJP_PORT [CLUSTER_PORT ALL_CLUSTER_PORTS]
#       makes DIR a CATALINA_BASE (conf, logs, webapps/ROOT = the demo webapp), with the
#       engine's jvmRoute = ROUTE, HTTP and AJP connectors on 127.0.0.1, and starts it in the
#       background (pid in DIR/tomcat.pid). With CLUSTER_PORT and a comma-separated list of
#       every node's cluster port, the node joins a SimpleTcpCluster with DeltaManager and
#       static membership on 127.0.0.1 (no multicast) and a JvmRouteBinderValve. Start the
#       nodes of a cluster one after another (start, wait, start, wait): a node asks the
#       others for their sessions as it starts, and one still deploying cannot answer.
#       Environment: AJP_SECRET (default: none, secretRequired="false"), AJP_PACKET_SIZE,
#       MAX_KEEPALIVE (maxKeepAliveRequests, default Tomcat's 100), CERT_USER (a client
#       certificate's subject DN, as Java prints it: given role certuser for the demo's
#       CLIENT-CERT-protected /secure/).
#   scripts/tomcat.sh wait DIR [SECONDS]   waits until the instance answers HTTP.
#   scripts/tomcat.sh stop DIR             stops it (SIGTERM, then SIGKILL after 10 s).
set -euo pipefail

CATALINA_HOME=${CATALINA_HOME:-/usr/share/tomcat10}
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

install_tomcat() {
    if [ ! -x "$CATALINA_HOME/bin/catalina.sh" ]; then
        echo "tomcat.sh: installing tomcat10 (apt-get)" >&2
        if [ -z "${APT_UPDATED:-}" ]; then apt-get update -qq >/dev/null; fi
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq tomcat10 >/dev/null
    fi
}

server_xml() {
    local route=$1 http=$2 ajp=$3 cport=${4:-} cports=${5:-}
    local secret_attr='secretRequired="false"'
    if [ -n "${AJP_SECRET:-}" ]; then secret_attr="secret=\"$AJP_SECRET\""; fi
    local packet_attr=""
    if [ -n "${AJP_PACKET_SIZE:-}" ]; then packet_attr="packetSize=\"$AJP_PACKET_SIZE\""; fi
    local keep=${MAX_KEEPALIVE:-100}
    cat <<XML
<?xml version="1.0" encoding="UTF-8"?>
<Server port="-1" shutdown="SHUTDOWN">
  <Service name="Catalina">
    <Connector protocol="HTTP/1.1" address="127.0.0.1" port="$http" connectionTimeout="20000" maxKeepAliveRequests="$keep"/>
    <Connector protocol="AJP/1.3" address="127.0.0.1" port="$ajp" $secret_attr $packet_attr maxKeepAliveRequests="$keep"/>
    <Engine name="Catalina" defaultHost="localhost" jvmRoute="$route">
      <Realm className="org.apache.catalina.realm.MemoryRealm" pathname="conf/tomcat-users.xml"/>
XML
    if [ -n "$cport" ]; then
        cat <<XML
      <Cluster className="org.apache.catalina.ha.tcp.SimpleTcpCluster" channelSendOptions="8">
        <Manager className="org.apache.catalina.ha.session.DeltaManager" expireSessionsOnShutdown="false" notifyListenersOnReplication="true" stateTransferTimeout="10"/>
        <Channel className="org.apache.catalina.tribes.group.GroupChannel">
          <Membership className="org.apache.catalina.tribes.membership.StaticMembershipService">
XML
        local i=1
        IFS=, read -ra ports <<<"$cports"
        for p in "${ports[@]}"; do
            echo "            <Member className=\"org.apache.catalina.tribes.membership.StaticMember\" host=\"127.0.0.1\" port=\"$p\" uniqueId=\"{$i,0,0,0,0,0,0,0,0,0,0,0,0,0,0,$i}\"/>"
            i=$((i + 1))
        done
        cat <<XML
          </Membership>
          <Receiver className="org.apache.catalina.tribes.transport.nio.NioReceiver" address="127.0.0.1" port="$cport" autoBind="1"/>
          <Sender className="org.apache.catalina.tribes.transport.ReplicationTransmitter">
            <Transport className="org.apache.catalina.tribes.transport.nio.PooledParallelSender"/>
          </Sender>
          <Interceptor className="org.apache.catalina.tribes.group.interceptors.TcpFailureDetector"/>
          <Interceptor className="org.apache.catalina.tribes.group.interceptors.MessageDispatchInterceptor"/>
        </Channel>
        <Valve className="org.apache.catalina.ha.tcp.ReplicationValve" filter=""/>
        <Valve className="org.apache.catalina.ha.session.JvmRouteBinderValve"/>
        <ClusterListener className="org.apache.catalina.ha.session.ClusterSessionListener"/>
      </Cluster>
XML
    fi
    cat <<XML
      <Host name="localhost" appBase="webapps" unpackWARs="false" autoDeploy="false">
        <Valve className="org.apache.catalina.valves.AccessLogValve" directory="logs" prefix="access" suffix=".log" buffered="false" pattern="%h %l %u %t &quot;%r&quot; %s %b %{remote}p"/>
      </Host>
    </Engine>
  </Service>
</Server>
XML
}

start() {
    local dir=$1 route=$2 http=$3 ajp=$4 cport=${5:-} cports=${6:-}
    install_tomcat
    mkdir -p "$dir"/{conf,logs,temp,work,webapps}
    dir=$(cd "$dir" && pwd)
    for f in web.xml context.xml catalina.properties; do cp /etc/tomcat10/$f "$dir/conf/"; done
    cat >"$dir/conf/logging.properties" <<'PROPS'
handlers = java.util.logging.ConsoleHandler
.handlers = java.util.logging.ConsoleHandler
java.util.logging.ConsoleHandler.level = INFO
java.util.logging.ConsoleHandler.formatter = org.apache.juli.OneLineFormatter
PROPS
    server_xml "$route" "$http" "$ajp" "$cport" "$cports" >"$dir/conf/server.xml"
    {
        echo '<?xml version="1.0" encoding="UTF-8"?>'
        echo '<tomcat-users>'
        if [ -n "${CERT_USER:-}" ]; then echo "  <user username=\"$CERT_USER\" password=\"unused\" roles=\"certuser\"/>"; fi
        echo '</tomcat-users>'
    } >"$dir/conf/tomcat-users.xml"
    rm -rf "$dir/webapps/ROOT"
    cp -r "$HERE/demo-webapp" "$dir/webapps/ROOT"
    if [ -f "$dir/tomcat.pid" ] && kill -0 "$(cat "$dir/tomcat.pid")" 2>/dev/null; then
        echo "tomcat.sh: $dir is already running" >&2
        return 0
    fi
    (
        export CATALINA_HOME CATALINA_BASE="$dir" CATALINA_TMPDIR="$dir/temp"
        export JAVA_OPTS="${JAVA_OPTS:--Xms64m -Xmx256m -XX:+UseSerialGC -XX:TieredStopAtLevel=1} -Djava.security.egd=file:/dev/./urandom -Dnode.name=$route -DjvmRoute=$route"
        # catalina.sh run execs java: the pid we record is the JVM's.
        exec setsid "$CATALINA_HOME/bin/catalina.sh" run >"$dir/logs/catalina.out" 2>&1 </dev/null
    ) &
    echo $! >"$dir/tomcat.pid"
}

wait_up() {
    local dir=$1 secs=${2:-90}
    local port
    port=$(grep -o 'protocol="HTTP/1.1" address="127.0.0.1" port="[0-9]*"' "$dir/conf/server.xml" | grep -o '[0-9]*"$' | tr -d '"')
    for _ in $(seq 1 $((secs * 5))); do
        if ! kill -0 "$(cat "$dir/tomcat.pid")" 2>/dev/null; then
            echo "tomcat.sh: tomcat in $dir died; last log lines:" >&2
            tail -20 "$dir/logs/catalina.out" >&2
            return 1
        fi
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            if printf 'GET /hello.txt HTTP/1.0\r\n\r\n' | timeout 5 bash -c "exec 3<>/dev/tcp/127.0.0.1/$port; cat >&3; cat <&3" 2>/dev/null | grep -q "200"; then
                return 0
            fi
        fi
        sleep 0.2
    done
    echo "tomcat.sh: tomcat in $dir did not answer on port $port within ${secs}s" >&2
    tail -20 "$dir/logs/catalina.out" >&2
    return 1
}

stop() {
    local dir=$1
    [ -f "$dir/tomcat.pid" ] || return 0
    local pid
    pid=$(cat "$dir/tomcat.pid")
    if kill -0 "$pid" 2>/dev/null; then
        kill -CONT "$pid" 2>/dev/null || true
        kill -TERM "$pid" 2>/dev/null || true
        for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
        kill -KILL "$pid" 2>/dev/null || true
    fi
    rm -f "$dir/tomcat.pid"
}

case "${1:-}" in
    install) install_tomcat ;;
    start) shift; start "$@" ;;
    wait) shift; wait_up "$@" ;;
    stop) shift; stop "$@" ;;
    *) sed -n '2,20p' "$0" >&2; exit 2 ;;
esac
