package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"
)

func (e *env) getCommand() *cobra.Command {
	var ref string
	var out Output
	cmd := &cobra.Command{
		Use:   "get REF",
		Short: "Print one value named by Keeper notation",
		Long: `Print the value a Keeper notation reference names, such as
keeper://UID/field/password, keeper://TITLE/custom_field/env or keeper://UID/field/host[0][hostName].

A string value is printed as it is, followed by a newline; any other value as JSON.
With -o json the API's answer {"value": ...} is printed; -o yaml prints it as YAML.
` + envHelp,
		Example: `  PW="$(keyturn get keeper://3bX.../field/password)"`,
		Args:    cobra.ExactArgs(1),
		RunE: e.run(&out, func(_ *cobra.Command, args []string) error {
			ref = args[0]
			if strings.TrimSpace(ref) == "" {
				return Usagef("the reference is empty: use keeper://UID/field/password")
			}
			return nil
		}, func(ctx context.Context, c *Client, inv *invocation) error {
			val, raw, err := c.Resolve(ctx, ref)
			if err != nil {
				return err
			}
			return inv.writeRaw(raw, func(w io.Writer) error {
				var s string
				if json.Unmarshal(val, &s) == nil {
					_, err := fmt.Fprintln(w, s)
					return err
				}
				return writeRawJSON(w, val)
			})
		}),
	}
	AddOutputFlag(cmd, &out)
	return cmd
}
