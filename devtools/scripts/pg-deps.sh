#!/bin/sh
# pgvector for the local PostgreSQL at 127.0.0.1:5432 (`make pg-deps`), then
# CREATE EXTENSION vector in template1 and test. Never fails: without pgvector
# rag's PostgreSQL vector-index tests skip and say why.
#
# Where the extension is missing, as root with apt-get, in this order:
#   1. the package postgresql-<major>-pgvector, where the apt sources carry it
#      (PGDG's apt.postgresql.org, Debian trixie and later);
#   2. otherwise (Debian bookworm has no pgvector package) a build of pgvector's
#      source as Debian ships it (trixie's pgvector_$PGVECTOR_VERSION.orig.tar.gz
#      from deb.debian.org, checked against the sha256 of trixie's signed Sources
#      index) against postgresql-server-dev-<major> from the machine's own sources.
set -u

PGVECTOR_VERSION=0.8.0
PGVECTOR_SHA256=867a2c328d4928a5a9d6f052cd3bc78c7d60228a9b914ad32aa3db88e9de27b0
PGVECTOR_URL="http://deb.debian.org/debian/pool/main/p/pgvector/pgvector_${PGVECTOR_VERSION}.orig.tar.gz"

admin() { psql -h 127.0.0.1 -U postgres -d test -Atqc "$1" 2>/dev/null; }
say() { echo "pg-deps: $*"; }
available() { [ -n "$(admin "SELECT 1 FROM pg_available_extensions WHERE name = 'vector'")" ]; }

if ! admin 'SELECT 1' >/dev/null; then
    say "PostgreSQL on 127.0.0.1:5432 unreachable; skipped"
    exit 0
fi
major=$(admin 'SHOW server_version_num' | cut -c1-2)

from_package() {
    apt-cache show "postgresql-$major-pgvector" >/dev/null 2>&1 \
        || { apt-get update -qq && apt-cache show "postgresql-$major-pgvector" >/dev/null 2>&1; } \
        || return 1
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "postgresql-$major-pgvector"
}

from_source() {
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "postgresql-server-dev-$major" make gcc \
        >/dev/null || return 1
    work=$(mktemp -d) || return 1
    trap 'rm -rf "$work"' EXIT
    curl -fsSL --max-time 120 -o "$work/pgvector.tar.gz" "$PGVECTOR_URL" || return 1
    echo "$PGVECTOR_SHA256  $work/pgvector.tar.gz" | sha256sum -c --quiet - || return 1
    tar -xzf "$work/pgvector.tar.gz" -C "$work" || return 1
    # OPTFLAGS="": pgvector defaults to -march=native; the build must run on any x86-64.
    make -s -C "$work/pgvector-$PGVECTOR_VERSION" OPTFLAGS="" \
        PG_CONFIG="/usr/lib/postgresql/$major/bin/pg_config" install >/dev/null
}

if ! available; then
    if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
        say "pgvector missing and not root with apt-get; pgvector tests skip"
    elif from_package; then
        say "installed postgresql-$major-pgvector"
    elif from_source; then
        say "built pgvector $PGVECTOR_VERSION (Debian's source) for PostgreSQL $major"
    else
        say "pgvector could not be installed (no package, source build failed); pgvector tests skip"
    fi
fi
if available; then
    for db in template1 test; do
        psql -h 127.0.0.1 -U postgres -d "$db" -Atqc 'CREATE EXTENSION IF NOT EXISTS vector' >/dev/null
    done
fi
exit 0
