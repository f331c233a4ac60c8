// Package cli holds keyturn's client commands; they talk to a keyturn server over HTTP.
package cli

import "github.com/spf13/cobra"

// Commands returns the client commands.
func Commands() []*cobra.Command { return nil }
