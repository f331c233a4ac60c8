// Package cli holds keyturn's client commands; they talk to a keyturn server over HTTP.
package cli

import (
	"net/http"
	"os"

	"github.com/spf13/cobra"
)

// envHelp is appended to every client command's help.
const envHelp = `
Environment:
  KEYTURN_ADDR        server address (default ` + DefaultAddr + `)
  KEYTURN_TEAM        team name (required)
  KEYTURN_TOKEN       a bearer token, or else
  KEYTURN_KEY_ID      an API key id and
  KEYTURN_KEY_SECRET  its secret, exchanged for a bearer token first`

// Commands returns the client commands, built afresh on each call, reading their settings
// from the process environment.
func Commands() []*cobra.Command { return newCommands(os.Getenv) }

// env is what the client commands share: how to read settings and make HTTP calls.
type env struct {
	getenv func(string) string
	http   *http.Client // nil: NewClient's default
}

func newCommands(getenv func(string) string) []*cobra.Command {
	e := &env{getenv: getenv}
	return []*cobra.Command{e.recordCommand(), e.getCommand(), e.serviceUserCommand()}
}

// client reads the configuration and returns a client; missing settings are usage errors.
func (e *env) client() (*Client, error) {
	cfg, err := ConfigFromEnv(e.getenv)
	if err != nil {
		return nil, err
	}
	return NewClient(cfg, e.http), nil
}
