package cli

import (
	"encoding/json"
	"fmt"
	"strings"

	"github.com/spf13/cobra"
)

func (e *env) getCommand() *cobra.Command {
	var out *output
	cmd := &cobra.Command{
		Use:   "get REF",
		Short: "Print one value named by Keeper notation",
		Long: `Print the value a Keeper notation reference names, such as
keeper://UID/field/password, keeper://TITLE/custom_field/env or keeper://UID/field/host[0][hostName].

A string value is printed as it is, followed by a newline; any other value as JSON.
With -o json the API's answer {"value": ...} is printed.
` + envHelp,
		Example: `  PW="$(keyturn get keeper://3bX.../field/password)"`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			asJSON, err := out.json()
			if err != nil {
				return err
			}
			ref := args[0]
			if strings.TrimSpace(ref) == "" {
				return Usagef("the reference is empty: use keeper://UID/field/password")
			}
			c, err := e.client()
			if err != nil {
				return err
			}
			val, raw, err := c.Resolve(cmd.Context(), ref)
			if err != nil {
				return err
			}
			if asJSON {
				return writeRawJSON(cmd.OutOrStdout(), raw)
			}
			var s string
			if json.Unmarshal(val, &s) == nil {
				_, err = fmt.Fprintln(cmd.OutOrStdout(), s)
				return err
			}
			return writeRawJSON(cmd.OutOrStdout(), val)
		},
	}
	out = addOutputFlag(cmd)
	return cmd
}
