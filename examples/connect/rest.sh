#!/usr/bin/env bash
# Connect an account behind any REST API to keyturn's declarative rest connector: the resource
# record's custom field "REST Rotation" describes, as JSON, the request that changes the
# password ("rotate") and, optionally, one that checks a password ("verify"). No script.
#
# Each request has these keys; all but url and body have defaults:
#   method    the HTTP method (default POST)
#   url       a template (default "{{.URL}}"); its values but .URL are path-escaped
#   headers   {"Name": "template"}: values as they are (default none; a body gets
#             Content-Type: application/json unless a header sets it)
#   body      a template: its values are JSON-escaped, so write "{{.NewPassword}}" in quotes
#   success   statuses that mean it worked (default [200, 201, 204])
#   rejected  verify only: statuses that mean "wrong password" (default [401, 403])
# Templates see .URL (the resource's url), .User (the pamUser's login), .NewPassword and
# .OldPassword (rotate), .Password (the one verify checks), and .AdminLogin and .AdminSecret
# (the resource's login and password).
#
# This one rotates through Okta's admin API, as an example of a REST endpoint:
#   REST_URL            the API's base URL (the resource's url)
#   REST_TOKEN_FILE     a file holding the admin's token (the resource's password)
#   REST_LOGIN          the account whose password keyturn rotates
#   REST_PASSWORD_FILE  a file holding that account's current password
set -euo pipefail

config=$(cat <<'JSON'
{
  "rotate": {
    "method": "POST",
    "url": "{{.URL}}/api/v1/users/{{.User}}",
    "headers": {"Authorization": "SSWS {{.AdminSecret}}", "Accept": "application/json"},
    "body": "{\"credentials\": {\"password\": {\"value\": \"{{.NewPassword}}\"}}}",
    "success": [200]
  },
  "verify": {
    "method": "POST",
    "url": "{{.URL}}/api/v1/authn",
    "headers": {"Accept": "application/json", "Content-Type": "application/json"},
    "body": "{\"username\": \"{{.User}}\", \"password\": \"{{.Password}}\"}",
    "success": [200],
    "rejected": [401]
  }
}
JSON
)

target=$(keyturn record create --type login --title "REST endpoint $REST_URL" --folder Shared/REST \
  --field url="$REST_URL" --field password=- --custom "REST Rotation=$config" <"$REST_TOKEN_FILE")
user=$(keyturn record create --type pamUser --title "REST account $REST_LOGIN" --folder Shared/REST \
  --field login="$REST_LOGIN" --field password=- <"$REST_PASSWORD_FILE")
keyturn rotation set "$user" --method general --connector rest --resource "$target"
keyturn rotate "$user" --wait
