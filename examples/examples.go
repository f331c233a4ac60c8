// Package examples holds scripts that ship with keyturn as examples to copy, embedded so that
// `keyturn sandbox` can run them.
package examples

import _ "embed"

// OktaUserRotation is the corrected Bash script that rotates an Okta user's password in
// scripts_only mode (okta/okta-user-rotation.sh).
//
//go:embed okta/okta-user-rotation.sh
var OktaUserRotation []byte
