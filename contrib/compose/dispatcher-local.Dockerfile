# The dispatcher of compose.yaml: the sandbox image (`sandbox`, Node.js, the pinned harness
# CLIs) plus the control plane's `dispatcher`, so that sandboxes run as processes of this
# container with the local backend. The dispatcher runs as root only to start each sandbox
# as the image's unprivileged user `agent` (uid 1001, SANDBOX_LOCAL_USER), which cannot read
# the dispatcher's environment. Build after the two images it is made of:
#   docker build -f contrib/compose/dispatcher-local.Dockerfile -t centaur-dispatcher-local:latest contrib/compose
ARG CENTAUR_IMAGE=centaur:latest
ARG AGENT_IMAGE=centaur-agent:latest
FROM ${CENTAUR_IMAGE} AS centaur

FROM ${AGENT_IMAGE}
USER root
# The sandbox image points every TLS stack at the proxy CA mount; the dispatcher itself
# (Slack delivery) uses the system's CAs. Sandboxes get the proxy CA from SANDBOX_CA_FILE.
ENV SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt \
    NODE_EXTRA_CA_CERTS=/etc/ssl/certs/ca-certificates.crt \
    REQUESTS_CA_BUNDLE=/etc/ssl/certs/ca-certificates.crt \
    GIT_SSL_CAINFO=/etc/ssl/certs/ca-certificates.crt \
    HOME=/root \
    SANDBOX_BACKEND=local \
    SANDBOX_LOCAL_USER=agent \
    SANDBOX_COMMAND=/usr/local/bin/sandbox \
    SANDBOX_STATE_DIR=/var/lib/centaur/sandboxes
WORKDIR /var/lib/centaur
ENTRYPOINT []
CMD ["dispatcher"]
COPY --from=centaur /usr/local/bin/dispatcher /usr/local/bin/centaur /usr/local/bin/
