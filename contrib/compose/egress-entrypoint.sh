#!/bin/sh
# Runs mitmdump with Centaur's addon and publishes the proxy's CA certificate (never its key)
# as /egress-ca/ca.crt, the volume the dispatcher hands to sandboxes (SANDBOX_CA_FILE).
# Environment: EGRESS_LISTEN (127.0.0.1), EGRESS_PORT (8080), EGRESS_CONFIG (the proxy.yaml,
# default /etc/centaur-egress/proxy.local.yaml); the real keys it swaps in. Arguments are
# passed on to mitmdump.
set -eu
confdir=/var/lib/egress/confdir
mkdir -p "$confdir"
chmod 700 "$confdir"
rm -f /egress-ca/ca.crt
mitmdump --listen-host "${EGRESS_LISTEN:-127.0.0.1}" --listen-port "${EGRESS_PORT:-8080}" \
  --set confdir="$confdir" --set connection_strategy=lazy \
  -s /etc/centaur-egress/centaur_egress.py \
  --set centaur_config="${EGRESS_CONFIG:-/etc/centaur-egress/proxy.local.yaml}" \
  --set centaur_skip_unset=true "$@" &
pid=$!
trap 'kill -TERM "$pid" 2>/dev/null' TERM INT
while [ ! -s "$confdir/mitmproxy-ca-cert.pem" ]; do
  kill -0 "$pid" 2>/dev/null || { wait "$pid"; exit $?; }
  sleep 0.2
done
cp "$confdir/mitmproxy-ca-cert.pem" /egress-ca/ca.crt.tmp
chmod 644 /egress-ca/ca.crt.tmp
mv /egress-ca/ca.crt.tmp /egress-ca/ca.crt
wait "$pid"
