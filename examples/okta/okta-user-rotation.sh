#!/usr/bin/env bash
# Rotates an Okta user's password from a keyturn (or KeeperPAM) "scripts only" rotation.
#
# A corrected take on the Bash example of Keeper's "Okta User" guide, which posts what Okta
# refuses and still exits 0. This one:
#   - sends passwords as Okta's {"value": ...} objects, built by jq (so any character is safe);
#   - looks the user's id up by login (change_password wants the id, not the login);
#   - fails (non-zero exit) on any HTTP error, so the rotation does not report a false success;
#   - never exports secrets into the environment or puts them on a command line.
# Needs bash, jq and curl. Attach a login record titled "Okta API Access Details" as a
# credential: its url is the Okta org URL and its password the API token (SSWS).
set -euo pipefail

IFS= read -r line
params=$(printf '%s' "$line" | base64 -d)
records=$(printf '%s' "$params" | jq -r '.records' | base64 -d)

api=$(printf '%s' "$records" | jq -c 'map(select(.title == "Okta API Access Details")) | first // empty')
if [ -z "$api" ]; then
  echo "no credential record titled \"Okta API Access Details\" is attached to this script" >&2
  exit 2
fi
org=$(printf '%s' "$api" | jq -r '.url')
login=$(printf '%s' "$params" | jq -r '.user')

# The API token reaches curl in a config read from stdin and the body through fd 3, never
# through argv.
okta() { # okta METHOD PATH [BODY]
  local method=$1 path=$2 body=${3-}
  local args=(--silent --show-error --fail-with-body --config - -X "$method")
  [ -z "$body" ] || args+=(--data-binary @/dev/fd/3)
  {
    printf 'header = "Authorization: SSWS %s"\n' "$(printf '%s' "$api" | jq -r '.password')"
    printf 'header = "Accept: application/json"\n'
    printf 'header = "Content-Type: application/json"\n'
  } | curl "${args[@]}" "$org$path" 3< <(printf '%s' "$body")
}

user_id=$(okta GET "/api/v1/users/$(jq -rn --arg l "$login" '$l|@uri')" | jq -r '.id')

body=$(printf '%s' "$params" | jq -c '{oldPassword: {value: .oldPassword}, newPassword: {value: .newPassword}}')
okta POST "/api/v1/users/$user_id/credentials/change_password" "$body" >/dev/null
echo "changed the Okta password of $login"
