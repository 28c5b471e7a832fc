#!/bin/sh
# PostgreSQL for the store tests: 127.0.0.1:5432, user postgres, no password (trust).
# Started when installed but stopped; installed first when missing and possible (root with
# apt-get), and then set to trust local TCP sign-ins, as a server for tests only.
# Otherwise the PostgreSQL tests skip and say why.
set -u
ready() { command -v pg_isready >/dev/null 2>&1 && pg_isready -q -h 127.0.0.1 -p 5432; }
ready && exit 0
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "note: PostgreSQL is not running on 127.0.0.1:5432; its tests will be skipped"
  exit 0
fi
installed=0
if ! command -v pg_lsclusters >/dev/null 2>&1; then
  { DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null 2>&1 ||
    { apt-get update -qq >/dev/null 2>&1 &&
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null 2>&1; }; } ||
    { echo "note: PostgreSQL could not be installed; its tests will be skipped"; exit 0; }
  installed=1
fi
cluster=$(pg_lsclusters -h 2>/dev/null | head -n 1)
if [ -z "$cluster" ]; then
  echo "note: no PostgreSQL cluster found; its tests will be skipped"
  exit 0
fi
version=$(echo "$cluster" | awk '{print $1}')
name=$(echo "$cluster" | awk '{print $2}')
if [ "$installed" = 1 ]; then
  hba=/etc/postgresql/$version/$name/pg_hba.conf
  printf 'host all postgres 127.0.0.1/32 trust\n' | cat - "$hba" >"$hba.new" && mv "$hba.new" "$hba"
fi
pg_ctlcluster "$version" "$name" start >/dev/null 2>&1 || pg_ctlcluster "$version" "$name" reload >/dev/null 2>&1
for _ in 1 2 3 4 5 6 7 8 9 10; do ready && exit 0; sleep 1; done
echo "note: PostgreSQL did not start on 127.0.0.1:5432; its tests will be skipped"
