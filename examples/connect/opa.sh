#!/usr/bin/env bash
# Connect an Okta Privileged Access service user: keyturn rotates its API key. OPA issues the
# new key, keyturn keeps its secret and key_id, checks it by exchanging it for a service token,
# then deletes the older keys.
#
#   OPA_TEAM_URL           the team's API, https://{org}.pam.okta.com/v1/teams/{team}
#   OPA_ADMIN_KEY_ID       an API key id of a service user who may manage the service user's
#                          keys (role resource_admin) ...
#   OPA_ADMIN_SECRET_FILE  ... and a file holding that key's secret
#   OPA_SERVICE_USER       the service user whose key keyturn rotates (the pamUser's login)
#   OPA_KEY_ID             its current key's id (the pamUser's custom field key_id) ...
#   OPA_KEY_SECRET_FILE    ... and a file holding that key's secret (the pamUser's password)
set -euo pipefail

# The resource record: the team URL, the admin key id as login, its secret as password.
team=$(keyturn record create --type login --title "OPA team admin key" --folder Shared/OPA \
  --field url="$OPA_TEAM_URL" --field login="$OPA_ADMIN_KEY_ID" --field password=- <"$OPA_ADMIN_SECRET_FILE")

# The pamUser: the service user's name as login, its key's secret as password, key_id beside.
robot=$(keyturn record create --type pamUser --title "OPA service user $OPA_SERVICE_USER" --folder Shared/OPA \
  --field login="$OPA_SERVICE_USER" --field password=- --custom key_id="$OPA_KEY_ID" <"$OPA_KEY_SECRET_FILE")

keyturn rotation set "$robot" --method general --connector opa --resource "$team"
keyturn rotate "$robot" --wait
