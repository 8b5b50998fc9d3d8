# The egress proxy for compose.yaml: mitmproxy running Centaur's addon
# (contrib/egress-proxy/centaur_egress.py) on contrib/egress-proxy/proxy.local.yaml, the
# chart's iron-proxy configuration with `type: env` sources. Build from the repository root:
#   docker build -f contrib/compose/egress.Dockerfile -t centaur-egress:latest .
# The real keys are given to this container's environment only (OPENAI_API_KEY, ...).
ARG BASE_IMAGE=debian:bookworm-slim
FROM ${BASE_IMAGE}
# mitmproxy 11.0.x: the series tests/requirements.txt pins (the last for Python 3.11).
ARG MITMPROXY_VERSION=11.0.2
# BUILD_CA_FILE: a CA bundle mounted into the build for a network that intercepts TLS
# (see sandbox/Dockerfile); pip trusts it during the install, the image keeps nothing of it.
ARG BUILD_CA_FILE=
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 python3-venv ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && if [ -n "$BUILD_CA_FILE" ]; then export PIP_CERT="$BUILD_CA_FILE"; fi \
 && python3 -m venv /opt/mitmproxy \
 && /opt/mitmproxy/bin/pip install --no-cache-dir --disable-pip-version-check \
      "mitmproxy==${MITMPROXY_VERSION}" "pyyaml>=6" \
 && groupadd --gid 1002 egress \
 && useradd --uid 1002 --gid 1002 --create-home --home-dir /var/lib/egress egress \
 && mkdir -p /egress-ca && chown egress:egress /egress-ca
COPY contrib/egress-proxy/centaur_egress.py contrib/egress-proxy/proxy.local.yaml /etc/centaur-egress/
COPY contrib/compose/egress-entrypoint.sh /usr/local/bin/egress-entrypoint.sh
ENV PATH=/opt/mitmproxy/bin:$PATH PYTHONUNBUFFERED=1
USER 1002:1002
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/egress-entrypoint.sh"]
