#!/usr/bin/env bash
# Connect an Okta user whose password may change behind keyturn's back: with the custom field
# "Okta Admin Reset" = True, when Okta refuses the old password keyturn sets the new one as an
# admin (POST /api/v1/users/{id}), and a heartbeat that finds the password changed repairs it
# with a rotation. The field may sit on the pamUser or on its resource record.
#
#   OKTA_URL, OKTA_TOKEN_FILE, OKTA_LOGIN, OKTA_PASSWORD_FILE: as for okta-ssws.sh; the
#   password in OKTA_PASSWORD_FILE may be out of date.
set -euo pipefail

org=$(keyturn record create --type login --title "Okta org (admin reset)" --folder Shared/Okta \
  --field url="$OKTA_URL" --field password=- <"$OKTA_TOKEN_FILE")
user=$(keyturn record create --type pamUser --title "Okta user $OKTA_LOGIN" --folder Shared/Okta \
  --field login="$OKTA_LOGIN" --field password=- --custom "Okta Admin Reset=True" <"$OKTA_PASSWORD_FILE")
keyturn rotation set "$user" --method general --connector okta --resource "$org"
keyturn rotate "$user" --wait
