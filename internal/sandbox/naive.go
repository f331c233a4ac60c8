package sandbox

// naiveScript makes the mistakes of the Bash example in Keeper's Okta guide, so that the
// sandbox can show what verification catches: it sends the passwords as plain strings where
// Okta wants {"value": ...} objects, puts the login where change_password wants the user id,
// and exits 0 whatever Okta answers. (Unlike that example it keeps the secrets off argv.)
const naiveScript = `#!/usr/bin/env bash
IFS= read -r line
params=$(printf '%s' "$line" | base64 -d)
records=$(printf '%s' "$params" | jq -r '.records' | base64 -d)
api=$(printf '%s' "$records" | jq -c '.[] | select(.title == "Okta API Access Details")')
org=$(printf '%s' "$api" | jq -r '.url')
user=$(printf '%s' "$params" | jq -r '.user')
{
  printf 'header = "Authorization: SSWS %s"\n' "$(printf '%s' "$api" | jq -r '.password')"
  printf 'header = "Content-Type: application/json"\n'
} | curl --silent --show-error --config - -X POST --data-binary @/dev/fd/3 \
    "$org/api/v1/users/$user/credentials/change_password" \
    3< <(printf '%s' "$params" | jq -c '{oldPassword: .oldPassword, newPassword: .newPassword}')
echo
echo "done"
`
