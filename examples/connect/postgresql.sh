#!/usr/bin/env bash
# Connect a PostgreSQL role to keyturn's postgresql connector. keyturn logs in as an admin role
# (a superuser, or one with CREATEROLE that has ADMIN on the role), sends ALTER ROLE with a
# SCRAM-SHA-256 verifier it computes itself (so no clear password reaches the statement log),
# then checks the new password with a fresh login as the role.
#
#   PG_URL                  postgres://host:5432/database?sslmode=verify-full
#                           (sslmode: disable, require, verify-ca or verify-full, the default)
#   PG_ADMIN                the admin role keyturn logs in as
#   PG_ADMIN_PASSWORD_FILE  a file holding the admin's password
#   PG_ROLE                 the role whose password keyturn rotates
#   PG_PASSWORD_FILE        a file holding that role's current password
#   KEYTURN_ADDR, KEYTURN_TEAM, KEYTURN_KEY_ID, KEYTURN_KEY_SECRET: as for the keyturn CLI
set -euo pipefail

db=$(keyturn record create --type pamDatabase --title "PostgreSQL $PG_URL" --folder Shared/Databases \
  --field url="$PG_URL" --field login="$PG_ADMIN" --field password=- <"$PG_ADMIN_PASSWORD_FILE")
user=$(keyturn record create --type pamUser --title "PostgreSQL role $PG_ROLE" --folder Shared/Databases \
  --field login="$PG_ROLE" --field password=- <"$PG_PASSWORD_FILE")
keyturn rotation set "$user" --method general --connector postgresql --resource "$db"
keyturn rotate "$user" --wait
