#!/usr/bin/env bash
# Connect an Okta user rotated by a KeeperPAM post-rotation script, unchanged ("Run PAM scripts
# only", NOOP): the script changes the password and keyturn trusts the rotation only once the
# okta connector (--verify-with) finds that Okta accepts the new password.
#
#   OKTA_URL, OKTA_TOKEN_FILE, OKTA_LOGIN, OKTA_PASSWORD_FILE: as for okta-ssws.sh
#   SCRIPT   the script (default examples/okta/okta-user-rotation.sh: bash, jq and curl)
set -euo pipefail
script=${SCRIPT:-examples/okta/okta-user-rotation.sh}

# The script finds the org and its token in a credential record with this title.
api=$(keyturn record create --type login --title "Okta API Access Details" --folder Shared/Okta \
  --field url="$OKTA_URL" --field password=- <"$OKTA_TOKEN_FILE")
user=$(keyturn record create --type pamUser --title "Okta user $OKTA_LOGIN" --folder Shared/Okta \
  --field login="$OKTA_LOGIN" --field password=- <"$OKTA_PASSWORD_FILE")

# --resource names the record verify_with checks against (the org and its token).
keyturn rotation set "$user" --method scripts_only --verify-with okta --resource "$api"
keyturn script add "$user" --file "$script" --credential "$api"

# What the script will read on stdin: the base64 line, its params (records is itself base64)
# and the records decoded; secrets masked.
keyturn script params "$user"
keyturn rotate "$user" --wait
