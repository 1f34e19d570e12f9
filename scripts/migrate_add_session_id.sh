#!/usr/bin/env bash
# Adopt (or upgrade) a SQLite loads.db: verified backup, stamp a legacy file at the first
# revision, upgrade to head, verify, commit; on any failure the file is left as it was.
# Usage: scripts/migrate_add_session_id.sh [PATH (default ./loads.db)] [--json]
# Exit status: 0 migrated or already at head, 1 failed (rolled back), 2 refused (nothing done).
# Details: docs/MIGRATIONS.md and negotiation/migrate_sqlite.py.
set -euo pipefail
caller="$PWD"
source "$(dirname "$0")/_bootstrap.sh" ""  # no extras; not our arguments
cd "$caller"
exec python -m negotiation.migrate_sqlite "$@"
