package cli

import (
	"errors"
	"fmt"

	"github.com/spf13/cobra"
)

// Exit codes of every keyturn command (ARCHITECTURE.md §5).
const (
	ExitOK       = 0
	ExitFailed   = 1 // the operation failed; the message says why
	ExitBadUsage = 2 // the command line is wrong

	ExitInterrupted = 130 // interrupted (Ctrl-C) before it finished: 128 + SIGINT, as shells report it
)

// UsageError is an error in how a command was called.
type UsageError struct{ Err error }

func (e UsageError) Error() string { return e.Err.Error() }
func (e UsageError) Unwrap() error { return e.Err }

// InterruptedError is a command stopped by an interrupt (Ctrl-C) before it finished; what it
// asked the server to do may go on there, and the message says how to follow it.
type InterruptedError struct{ Err error }

func (e InterruptedError) Error() string { return e.Err.Error() }
func (e InterruptedError) Unwrap() error { return e.Err }

// Usagef returns a UsageError with a formatted message.
func Usagef(format string, args ...any) error { return UsageError{fmt.Errorf(format, args...)} }

// ExitCode is the one place where an error becomes a process exit code.
func ExitCode(err error) int {
	if err == nil {
		return ExitOK
	}
	var u UsageError
	if errors.As(err, &u) {
		return ExitBadUsage
	}
	// A record named by a title several records share: the command line must name it by uid.
	var ae *APIError
	if errors.As(err, &ae) && ae.Code == "ambiguous_title" {
		return ExitBadUsage
	}
	var i InterruptedError
	if errors.As(err, &i) {
		return ExitInterrupted
	}
	return ExitFailed
}

// MarkUsageErrors makes cobra's own errors (bad flags, wrong argument counts, unknown
// commands) usage errors, for cmd and all its subcommands.
func MarkUsageErrors(cmd *cobra.Command) {
	cmd.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return UsageError{err} })
	if cmd.Args != nil {
		args := cmd.Args
		cmd.Args = func(c *cobra.Command, a []string) error {
			if err := args(c, a); err != nil {
				return UsageError{err}
			}
			return nil
		}
	}
	for _, sub := range cmd.Commands() {
		MarkUsageErrors(sub)
	}
}
