// Package cli holds keyturn's client commands; they talk to a keyturn server over HTTP.
package cli

import (
	"context"
	"io"
	"net/http"
	"os"
	"strings"
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

// groupCommand returns a command that only groups subs: run alone, it shows its help.
func groupCommand(use, short string, subs ...*cobra.Command) *cobra.Command {
	cmd := &cobra.Command{
		Use:   use,
		Short: short,
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return cmd.Help()
		},
	}
	cmd.AddCommand(subs...)
	return cmd
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

// invocation is what a command's body is given besides its context and client: the command
// (for its flags, standard input and standard error), its standard output, and the output
// format -o asked for.
type invocation struct {
	cmd    *cobra.Command
	w      io.Writer
	format Format
}

// argCheck checks a command's arguments, and any flags that need it, before the client is
// made (reading what they name, such as the file of script add); it keeps what it parses in
// variables the command's body reads.
type argCheck func(cmd *cobra.Command, args []string) error

// run returns the RunE of a client command. Every client command starts the same way, in
// this order: the -o flag is checked, then check (when not nil) checks the arguments and
// flags, then the client is made from the environment; only then does body run, with the
// command's context.
func (e *env) run(out *Output, check argCheck,
	body func(ctx context.Context, c *Client, inv *invocation) error) func(*cobra.Command, []string) error {
	return func(cmd *cobra.Command, args []string) error {
		format, err := out.Format()
		if err != nil {
			return err
		}
		if check != nil {
			if err := check(cmd, args); err != nil {
				return err
			}
		}
		c, err := e.client()
		if err != nil {
			return err
		}
		return body(cmd.Context(), c, &invocation{cmd: cmd, w: cmd.OutOrStdout(), format: format})
	}
}

// idArg returns an argument without the spaces around it, refusing an empty one; what names
// the argument in the message, such as "record UID".
func idArg(arg, what string) (string, error) {
	id := strings.TrimSpace(arg)
	if id == "" {
		return "", Usagef("the %s is empty", what)
	}
	return id, nil
}
