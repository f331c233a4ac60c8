#!/usr/bin/env bash
# Connect a Linux account to keyturn's ssh connector. keyturn logs in over SSH as an admin
# (root runs chpasswd; another admin runs sudo chpasswd), feeds "user:password" to chpasswd on
# stdin (never in the command), then checks the new password with a fresh SSH login as the
# account. The server's host key is pinned in the resource: keyturn never trusts on first use.
#
#   SSH_URL              ssh://host:22
#   SSH_HOST_KEY         the server's host key, as `ssh-keyscan -t ed25519 host` prints it
#   SSH_ADMIN            the admin keyturn logs in as
#   SSH_ADMIN_KEY_FILE   the admin's private key (OpenSSH format)
#   SSH_LOGIN            the Linux account whose password keyturn rotates
#   SSH_PASSWORD_FILE    a file holding that account's current password
#   KEYTURN_ADDR, KEYTURN_TEAM, KEYTURN_KEY_ID, KEYTURN_KEY_SECRET: as for the keyturn CLI
set -euo pipefail

# The private key goes in a custom field of type secret, which `keyturn record create` cannot
# make (its --custom fields are text), so this record is created over the API. Secrets reach
# curl through a config on stdin or a file descriptor, never through argv.
api=${KEYTURN_ADDR:-http://127.0.0.1:8200}/v1/teams/$KEYTURN_TEAM
bearer=$(jq -n '{key_id: env.KEYTURN_KEY_ID, key_secret: env.KEYTURN_KEY_SECRET}' |
  curl --silent --show-error --fail-with-body -H 'Content-Type: application/json' \
    --data-binary @- "$api/service_token" | jq -er .bearer_token)
host=$(jq -n --arg url "$SSH_URL" --arg admin "$SSH_ADMIN" --arg hostkey "$SSH_HOST_KEY" \
  --rawfile key "$SSH_ADMIN_KEY_FILE" '{
    type: "pamMachine", title: "Linux host \($url)", folder: "Shared/Linux",
    fields: [{type: "url", value: [$url]}, {type: "login", value: [$admin]}],
    custom: [{type: "text", label: "SSH Host Key", value: [$hostkey]},
             {type: "secret", label: "SSH Private Key", value: [$key]}]}' |
  curl --silent --show-error --fail-with-body --config <(printf 'header = "Authorization: Bearer %s"\n' "$bearer") \
    -H 'Content-Type: application/json' --data-binary @- "$api/records" | jq -er .uid)

user=$(keyturn record create --type pamUser --title "Linux account $SSH_LOGIN" --folder Shared/Linux \
  --field login="$SSH_LOGIN" --field password=- <"$SSH_PASSWORD_FILE")
keyturn rotation set "$user" --method general --connector ssh --resource "$host"
keyturn rotate "$user" --wait
