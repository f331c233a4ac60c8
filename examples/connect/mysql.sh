#!/usr/bin/env bash
# Connect a MariaDB or MySQL account to keyturn's mysql connector. keyturn logs in as an admin
# with the CREATE USER privilege, sends ALTER USER with a password hash it computes itself (so
# no clear password reaches the general log), then checks the new password with a fresh login
# as the account.
#
#   MYSQL_URL                  mysql://host:3306?tls=true (tls: true, skip-verify, preferred, false)
#   MYSQL_ADMIN                the admin account keyturn logs in as
#   MYSQL_ADMIN_PASSWORD_FILE  a file holding the admin's password
#   MYSQL_USER                 the account whose password keyturn rotates
#   MYSQL_ACCOUNT_HOST         the account's host part, as in 'app'@'10.0.%' (default %)
#   MYSQL_PASSWORD_FILE        a file holding that account's current password
#   KEYTURN_ADDR, KEYTURN_TEAM, KEYTURN_KEY_ID, KEYTURN_KEY_SECRET: as for the keyturn CLI
set -euo pipefail

db=$(keyturn record create --type pamDatabase --title "MySQL $MYSQL_URL" --folder Shared/Databases \
  --field url="$MYSQL_URL" --field login="$MYSQL_ADMIN" --field password=- <"$MYSQL_ADMIN_PASSWORD_FILE")
user=$(keyturn record create --type pamUser --title "MySQL account $MYSQL_USER@${MYSQL_ACCOUNT_HOST:-%}" \
  --folder Shared/Databases --field login="$MYSQL_USER" --custom "MySQL Account Host=${MYSQL_ACCOUNT_HOST:-%}" \
  --field password=- <"$MYSQL_PASSWORD_FILE")
keyturn rotation set "$user" --method general --connector mysql --resource "$db"
keyturn rotate "$user" --wait
