#!/usr/bin/env bash
# Connect an Okta user to keyturn's okta connector through an OAuth 2.0 app instead of an SSWS
# token. In Okta: create an "API Services" app, set its client authentication to "Public key /
# Private key" (private_key_jwt) with your key's public half, grant it the scopes
# okta.users.read and okta.users.manage, and give it an admin role that may manage the user.
# "Require DPoP" on or off: keyturn notices and sends DPoP proofs when the app requires them.
#
#   OKTA_URL            the org, such as https://acme.okta.com
#   OKTA_CLIENT_ID      the app's client id
#   OKTA_KEY_FILE       its private key, PEM (RSA, or EC P-256)
#   OKTA_KEY_ID         optional: the key's kid, when the app has several keys
#   OKTA_LOGIN          the user whose password keyturn rotates
#   OKTA_PASSWORD_FILE  a file holding that user's current password
#   KEYTURN_ADDR, KEYTURN_TEAM, KEYTURN_KEY_ID, KEYTURN_KEY_SECRET: as for the keyturn CLI
set -euo pipefail

# The private key goes in a custom field of type secret, which `keyturn record create` cannot
# make (its --custom fields are text), so this record is created over the API. Secrets reach
# curl through a config on stdin or a file descriptor, never through argv.
api=${KEYTURN_ADDR:-http://127.0.0.1:8200}/v1/teams/$KEYTURN_TEAM
bearer=$(jq -n '{key_id: env.KEYTURN_KEY_ID, key_secret: env.KEYTURN_KEY_SECRET}' |
  curl --silent --show-error --fail-with-body -H 'Content-Type: application/json' \
    --data-binary @- "$api/service_token" | jq -er .bearer_token)
org=$(jq -n --arg url "$OKTA_URL" --arg client "$OKTA_CLIENT_ID" --arg kid "${OKTA_KEY_ID-}" \
  --rawfile key "$OKTA_KEY_FILE" '{
    type: "login", title: "Okta org (OAuth app \($client))", folder: "Shared/Okta",
    fields: [{type: "url", value: [$url]}],
    custom: ([{type: "text", label: "Okta Client ID", value: [$client]},
              {type: "secret", label: "Okta Private Key", value: [$key]}]
             + if $kid == "" then [] else [{type: "text", label: "Okta Key ID", value: [$kid]}] end)}' |
  curl --silent --show-error --fail-with-body --config <(printf 'header = "Authorization: Bearer %s"\n' "$bearer") \
    -H 'Content-Type: application/json' --data-binary @- "$api/records" | jq -er .uid)

user=$(keyturn record create --type pamUser --title "Okta user $OKTA_LOGIN" --folder Shared/Okta \
  --field login="$OKTA_LOGIN" --field password=- <"$OKTA_PASSWORD_FILE")
keyturn rotation set "$user" --method general --connector okta --resource "$org"
keyturn rotate "$user" --wait
