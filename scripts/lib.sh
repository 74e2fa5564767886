# Shared by scripts/demo and scripts/test: a venv with the project, and the real services.
# Safe to source repeatedly; every step is idempotent.

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${HIE_VENV:-$ROOT/.venv}"
export DEBIAN_FRONTEND=noninteractive

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

apt_install() {  # apt_install PKG... : installs only what is missing
  local missing=()
  for p in "$@"; do dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p"); done
  if [ ${#missing[@]} -gt 0 ]; then
    echo "installing: ${missing[*]}" >&2
    as_root apt-get update -q >/dev/null || true
    as_root apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
  fi
}

find_python() {
  for p in python3.11 python3.12 python3.13 python3; do
    if command -v "$p" >/dev/null && "$p" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
      echo "$p"; return 0
    fi
  done
  echo "hie needs Python 3.11 or newer" >&2; return 1
}

ensure_venv() {  # ensure_venv EXTRAS  (e.g. "test")
  local py; py="$(find_python)"
  if [ ! -x "$VENV/bin/python" ]; then
    if ! "$py" -m venv "$VENV" 2>/dev/null; then
      rm -rf "$VENV"
      apt_install python3-venv
      "$py" -m venv "$VENV"
    fi
  fi
  local stamp="$VENV/.hie-installed-$1"
  if [ ! -f "$stamp" ] || [ "$ROOT/pyproject.toml" -nt "$stamp" ]; then
    "$VENV/bin/python" -m pip install -q --upgrade pip >/dev/null
    if [ -n "$1" ]; then
      "$VENV/bin/python" -m pip install -q -e "$ROOT[$1]"
    else
      "$VENV/bin/python" -m pip install -q -e "$ROOT"
    fi
    touch "$stamp"
  fi
  export PATH="$VENV/bin:$PATH"
}

PGPORT="${HIE_TEST_PGPORT:-15432}"
PGCLUSTER="${HIE_TEST_PGCLUSTER:-hietest}"

start_postgres() {
  apt_install postgresql
  local ver; ver="$(ls /usr/lib/postgresql | sort -n | tail -1)"
  PGVER="$ver"
  if pg_lsclusters -h | awk '{print $1"/"$2}' | grep -qx "$ver/$PGCLUSTER"; then
    as_root pg_dropcluster --stop "$ver" "$PGCLUSTER"
  fi
  as_root pg_createcluster "$ver" "$PGCLUSTER" --port "$PGPORT" -o fsync=off \
    -o synchronous_commit=off -o full_page_writes=off -o max_connections=200 \
    -- --auth=trust >/dev/null
  as_root pg_ctlcluster "$ver" "$PGCLUSTER" start
  for _ in $(seq 100); do pg_isready -q -h 127.0.0.1 -p "$PGPORT" && break; sleep 0.2; done
  as_root su postgres -c "createdb -p $PGPORT hie_test" 2>/dev/null || true
  export HIE_TEST_PG_URL="postgresql+psycopg://postgres@127.0.0.1:$PGPORT/hie_test"
}

stop_postgres() {
  [ -n "${PGVER:-}" ] && as_root pg_dropcluster --stop "$PGVER" "$PGCLUSTER" 2>/dev/null || true
}
