#!/usr/bin/env bash
# Points the connect scripts at `keyturn emulator okta`: reads the line the emulator prints,
# writes each secret to a file in DIR (mode 0600), gives the emulated OPA team a service user,
# robot, with an API key to rotate, and prints the variables as export lines:
#
#   keyturn emulator okta --users 10 > emulator.json &
#   until [ -s emulator.json ]; do sleep 0.1; done
#   eval "$(examples/connect/emulator-env.sh secrets < emulator.json)"
#
# OKTA_* name seeded user 1 and REST_* seeded user 2 (user N: login user000N@example.com,
# password Seed-000N-Pass). Run it once per emulator: a second run finds robot taken (409).
# Needs bash, jq and curl.
set -euo pipefail
dir=${1:?usage: emulator-env.sh DIR < emulator.json}
umask 077
mkdir -p "$dir"
dir=$(cd "$dir" && pwd)

IFS= read -r emu || true
url=$(jq -er .base_url <<<"$emu")
team_url=$(jq -er '.opa.base_url + "/v1/teams/" + .opa.team' <<<"$emu")
jq -j .token <<<"$emu" >"$dir/okta-token"
jq -j .opa.key_secret <<<"$emu" >"$dir/opa-admin-secret"
printf '%s' Seed-0001-Pass >"$dir/okta-user-password"
printf '%s' Seed-0002-Pass >"$dir/rest-user-password"

# The OPA API with the admin's bearer token, passed to curl in a config on stdin (never in argv).
bearer=$(jq -c '{key_id: .opa.key_id, key_secret: .opa.key_secret}' <<<"$emu" |
  curl --silent --show-error --fail-with-body -H 'Content-Type: application/json' \
    --data-binary @- "$team_url/service_token" | jq -er .bearer_token)
opa() { # opa METHOD PATH [BODY]
  local args=(--silent --show-error --fail-with-body --config - -X "$1" -H 'Content-Type: application/json')
  [ -z "${3-}" ] || args+=(--data-binary "$3")
  printf 'header = "Authorization: Bearer %s"\n' "$bearer" | curl "${args[@]}" "$team_url$2"
}
opa POST /service_users '{"name": "robot"}' >/dev/null
key=$(opa POST /service_users/robot/keys)
jq -j .secret <<<"$key" >"$dir/opa-robot-secret"

printf 'export %s=%q\n' \
  OKTA_URL "$url" \
  OKTA_TOKEN_FILE "$dir/okta-token" \
  OKTA_LOGIN user0001@example.com \
  OKTA_PASSWORD_FILE "$dir/okta-user-password" \
  OPA_TEAM_URL "$team_url" \
  OPA_ADMIN_KEY_ID "$(jq -r .opa.key_id <<<"$emu")" \
  OPA_ADMIN_SECRET_FILE "$dir/opa-admin-secret" \
  OPA_SERVICE_USER robot \
  OPA_KEY_ID "$(jq -r .id <<<"$key")" \
  OPA_KEY_SECRET_FILE "$dir/opa-robot-secret" \
  REST_URL "$url" \
  REST_TOKEN_FILE "$dir/okta-token" \
  REST_LOGIN user0002@example.com \
  REST_PASSWORD_FILE "$dir/rest-user-password"
