package cli

import (
	"github.com/spf13/cobra"

	"github.com/keyturn/keyturn/internal/auth"
	"github.com/keyturn/keyturn/internal/rotation"
	"github.com/keyturn/keyturn/internal/vault"
)

// completeFlag makes shell completion offer values for cmd's flag name. It panics when cmd has
// no such flag: that is a mistake in the code, found by any test that builds the commands.
func completeFlag(cmd *cobra.Command, name string, values ...string) {
	err := cmd.RegisterFlagCompletionFunc(name, func(*cobra.Command, []string, string) ([]string, cobra.ShellCompDirective) {
		return values, cobra.ShellCompDirectiveNoFileComp
	})
	if err != nil {
		panic("complete --" + name + " of " + cmd.Name() + ": " + err.Error())
	}
}

// The values shell completion offers for flags whose values are a fixed list.
var (
	methodValues     = []string{rotation.MethodScriptsOnly, rotation.MethodGeneral}
	connectorValues  = rotation.ConnectorNames
	runStatusValues  = rotation.Statuses
	recordTypeValues = vault.Types
	userStatusValues = []string{auth.StatusActive, auth.StatusDisabled, auth.StatusDeleted}
)

// roleValues are the roles, for completing --role.
func roleValues() []string {
	roles := make([]string, len(auth.AllRoles))
	for i, r := range auth.AllRoles {
		roles[i] = string(r)
	}
	return roles
}
