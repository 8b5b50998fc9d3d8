# PostgreSQL for compose.yaml, from Debian's package (no registry image needed):
#   docker build -f contrib/compose/postgres.Dockerfile -t centaur-postgres:latest contrib/compose
# Environment: POSTGRES_PASSWORD (required on first start: the password of the roles
# `postgres` and `centaur`), POSTGRES_PORT (5432), POSTGRES_LISTEN (127.0.0.1). The data lives
# in /var/lib/postgresql/data (a volume); the database `centaur` is created on first start.
ARG BASE_IMAGE=debian:bookworm-slim
FROM ${BASE_IMAGE}
RUN mkdir -p /etc/postgresql-common \
 && echo 'create_main_cluster = false' >/etc/postgresql-common/createcluster.conf \
 && apt-get update \
 && apt-get install -y --no-install-recommends postgresql-15 \
 && rm -rf /var/lib/apt/lists/* \
 && mkdir -p /var/lib/postgresql/data /var/run/postgresql \
 && chown postgres:postgres /var/lib/postgresql/data /var/run/postgresql \
 && chmod 700 /var/lib/postgresql/data
COPY postgres-entrypoint.sh /usr/local/bin/postgres-entrypoint.sh
ENV PGDATA=/var/lib/postgresql/data PATH=/usr/lib/postgresql/15/bin:$PATH
USER postgres
EXPOSE 5432
STOPSIGNAL SIGINT
ENTRYPOINT ["/usr/local/bin/postgres-entrypoint.sh"]
