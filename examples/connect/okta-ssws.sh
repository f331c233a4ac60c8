#!/usr/bin/env bash
# Connect an Okta user to keyturn's okta connector, with an SSWS API token.
#
#   OKTA_URL            the org, such as https://acme.okta.com
#   OKTA_TOKEN_FILE     a file holding an API token (Security > API > Tokens) of an admin who
#                       may manage the user
#   OKTA_LOGIN          the user whose password keyturn rotates
#   OKTA_PASSWORD_FILE  a file holding that user's current password
#
# Secrets are read from files on stdin ("--field password=-"), never from the command line.
set -euo pipefail

# The resource record: the org's URL, and the API token as its password.
org=$(keyturn record create --type login --title "Okta org (SSWS token)" --folder Shared/Okta \
  --field url="$OKTA_URL" --field password=- <"$OKTA_TOKEN_FILE")

# The pamUser: the login and the current password.
user=$(keyturn record create --type pamUser --title "Okta user $OKTA_LOGIN" --folder Shared/Okta \
  --field login="$OKTA_LOGIN" --field password=- <"$OKTA_PASSWORD_FILE")

# keyturn changes the password with change_password (old and new) and checks the new one with
# /api/v1/authn (a custom field "Okta Verify" = False turns the check off).
keyturn rotation set "$user" --method general --connector okta --resource "$org"
keyturn rotate "$user" --wait
