// Package cli holds keyturn's client commands; they talk to a keyturn server over HTTP.
package cli

import (
	"io"
	"net/http"
	"os"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/term"
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

// env is what the client commands share: how to read settings and make HTTP calls, and the
// few things tests replace.
type env struct {
	getenv func(string) string
	http   *http.Client // nil: NewClient's default

	isTerminal  func(w io.Writer) bool // nil: whether w is a terminal (progress bars go only there)
	pollMin     time.Duration          // first wait between polls of a running rotation; 0: 250 ms
	pollMax     time.Duration          // longest wait between them; 0: 2 s
	auditPoll   time.Duration          // how often audit --follow asks for new events; 0: 1 s
	parallelism int                    // rotations started at once; 0: 4
}

func newCommands(getenv func(string) string) []*cobra.Command {
	return (&env{getenv: getenv}).commands()
}

func (e *env) commands() []*cobra.Command {
	return []*cobra.Command{e.recordCommand(), e.getCommand(), e.serviceUserCommand(),
		e.scriptCommand(), e.rotationCommand(), e.rotateCommand(), e.jobCommand(), e.auditCommand()}
}

// terminal reports whether w is a terminal.
func (e *env) terminal(w io.Writer) bool {
	if e.isTerminal != nil {
		return e.isTerminal(w)
	}
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// orDefault returns d, or def when d is not positive.
func orDefault[T time.Duration | int](d, def T) T {
	if d <= 0 {
		return def
	}
	return d
}

// client reads the configuration and returns a client; missing settings are usage errors.
func (e *env) client() (*Client, error) {
	cfg, err := ConfigFromEnv(e.getenv)
	if err != nil {
		return nil, err
	}
	return NewClient(cfg, e.http), nil
}
