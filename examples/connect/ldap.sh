#!/usr/bin/env bash
# Connect a directory account to keyturn's ldap connector. On OpenLDAP keyturn binds as an admin
# DN that may write userPassword and sends the Password Modify extended operation (RFC 3062),
# so the server hashes the password itself; then it checks the new password with a fresh bind
# as the account. ldap:// goes through StartTLS; ldaps:// works too.
#
#   LDAP_URL                  ldap://host:389 or ldaps://host:636
#   LDAP_CA_FILE              optional: PEM certificate(s) to trust instead of the system's CAs
#   LDAP_DIRECTORY_TYPE       optional: openldap (default) or active_directory
#   LDAP_ADMIN_DN             the DN keyturn binds as
#   LDAP_ADMIN_PASSWORD_FILE  a file holding the admin's password
#   LDAP_USER_DN              the DN of the account whose password keyturn rotates
#   LDAP_PASSWORD_FILE        a file holding that account's current password
#   KEYTURN_ADDR, KEYTURN_TEAM, KEYTURN_KEY_ID, KEYTURN_KEY_SECRET: as for the keyturn CLI
set -euo pipefail

custom=(--custom "LDAP Directory Type=${LDAP_DIRECTORY_TYPE:-openldap}")
if [ -n "${LDAP_CA_FILE-}" ]; then
  custom+=(--custom "LDAP CA Certificate=$(cat "$LDAP_CA_FILE")")
fi
dir=$(keyturn record create --type pamDirectory --title "Directory $LDAP_URL" --folder Shared/Directory \
  --field url="$LDAP_URL" --field login="$LDAP_ADMIN_DN" "${custom[@]}" --field password=- <"$LDAP_ADMIN_PASSWORD_FILE")
user=$(keyturn record create --type pamUser --title "Directory account $LDAP_USER_DN" --folder Shared/Directory \
  --field login="$LDAP_USER_DN" --field password=- <"$LDAP_PASSWORD_FILE")
keyturn rotation set "$user" --method general --connector ldap --resource "$dir"
keyturn rotate "$user" --wait
