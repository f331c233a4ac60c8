package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/keyturn/keyturn/internal/auth"
)

// userHelp explains roles and folders; it is appended to the help of create and update.
const userHelp = `
Roles: resource_admin (manages service users and keys), pam_admin (records, scripts,
rotation), security_admin (audit, metadata), secrets_reader (reads record values).
Folders limit every role to those folder prefixes, such as Shared/Okta; none means all.
You can grant only roles you hold and folders within your own, cannot change a service user
whose roles or folders go beyond yours (nor its keys), and cannot change your own roles or
folders.`

func (e *env) serviceUserCommand() *cobra.Command {
	return groupCommand("service-user", "Create, list, show and change service users and their API keys",
		e.userCreate(), e.userList(), e.userGet(), e.userUpdate(), e.keyCommand())
}

func (e *env) keyCommand() *cobra.Command {
	return groupCommand("key", "Issue, list and delete a service user's API keys",
		e.keyRotate(), e.keyList(), e.keyDelete())
}

// nameArg returns a service user name argument as given, refusing a blank one, and "." and
// "..", which cannot be a URL path segment (the server would redirect elsewhere).
func nameArg(args []string) (string, error) {
	name := args[0]
	switch {
	case strings.TrimSpace(name) == "":
		return "", Usagef("the service user name is empty")
	case name == "." || name == "..":
		return "", Usagef("%q cannot be a service user name", name)
	}
	return name, nil
}

// nameTo is an argCheck that keeps the service user name argument (see nameArg) in *name.
func nameTo(name *string) argCheck {
	return func(_ *cobra.Command, args []string) (err error) {
		*name, err = nameArg(args)
		return err
	}
}

func (e *env) userCreate() *cobra.Command {
	var in UserInput
	var out Output
	cmd := &cobra.Command{
		Use:   "create NAME [--role R ...] [--folder F ...]",
		Short: "Create a service user",
		Long: `Create an ACTIVE service user, without API keys (issue one with "service-user key rotate"),
and show it (with -o json, the user as the API returns it).
` + userHelp + "\n" + envHelp,
		Example: `  keyturn service-user create rotator --role pam_admin --folder Shared/Okta
  keyturn service-user key rotate rotator`,
		Args: cobra.ExactArgs(1),
		RunE: e.run(&out, nameTo(&in.Name), func(ctx context.Context, c *Client, inv *invocation) error {
			u, raw, err := c.CreateUser(ctx, in)
			if err != nil {
				return err
			}
			return inv.writeRaw(raw, func(w io.Writer) error { return writeUser(w, u) })
		}),
	}
	f := cmd.Flags()
	f.StringArrayVar(&in.Roles, "role", nil, "grant this role (repeatable)")
	completeFlag(cmd, "role", roleValues()...)
	f.StringArrayVar(&in.Folders, "folder", nil, "limit the roles to this folder prefix (repeatable; none: every folder)")
	AddOutputFlag(cmd, &out)
	return cmd
}

func (e *env) userList() *cobra.Command {
	var filter UserFilter
	var out Output
	cmd := &cobra.Command{
		Use:   "list [--contains S] [--starts-with S] [--status ACTIVE|DISABLED|DELETED]",
		Short: "List service users",
		Long: `List the team's service users, every page of them: name, status, roles, folders and id.
With -o json: {"list": [...]} holding every page's users.
` + envHelp,
		Args: cobra.NoArgs,
		RunE: e.run(&out, nil, func(ctx context.Context, c *Client, inv *invocation) error {
			users, err := c.ListUsers(ctx, filter)
			if err != nil {
				return err
			}
			return writeList(inv, users, "NAME\tSTATUS\tROLES\tFOLDERS\tID", func(u User) string {
				return fmt.Sprintf("%s\t%s\t%s\t%s\t%s", clean(u.Name), clean(u.Status), rolesText(u.Roles),
					foldersText(u.Folders), clean(u.ID))
			})
		}),
	}
	f := cmd.Flags()
	f.StringVar(&filter.Contains, "contains", "", "only users whose name contains this text")
	f.StringVar(&filter.StartsWith, "starts-with", "", "only users whose name starts with this text")
	f.StringVar(&filter.Status, "status", "", "only users with this status: ACTIVE, DISABLED or DELETED")
	completeFlag(cmd, "status", userStatusValues...)
	AddOutputFlag(cmd, &out)
	return cmd
}

func (e *env) userGet() *cobra.Command {
	var name string
	var out Output
	cmd := &cobra.Command{
		Use:   "get NAME",
		Short: "Show a service user",
		Long:  "Show a service user: id, status, roles and folders. With -o json, as the API returns it.\n" + envHelp,
		Args:  cobra.ExactArgs(1),
		RunE: e.run(&out, nameTo(&name), func(ctx context.Context, c *Client, inv *invocation) error {
			u, raw, err := c.GetUser(ctx, name)
			if err != nil {
				return err
			}
			return inv.writeRaw(raw, func(w io.Writer) error { return writeUser(w, u) })
		}),
	}
	AddOutputFlag(cmd, &out)
	return cmd
}

func (e *env) userUpdate() *cobra.Command {
	var status string
	var roles, folders []string
	var noRoles, allFolders bool
	var name string
	var ch UserChange // what the flags change
	var out Output
	cmd := &cobra.Command{
		Use:   "update NAME [--status S] [--role R ... | --no-roles] [--folder F ... | --all-folders]",
		Short: "Change a service user's status, roles or folders",
		Long: `Change what the flags give and nothing else, and show the user as it is then.

--status is ACTIVE, DISABLED or DELETED: a disabled user's keys and tokens stop working until
it is made ACTIVE again; a deleted user cannot be changed any more. Nobody can disable or
delete themselves. The --role flags together replace the user's roles, and the --folder flags
its folders.
` + userHelp + "\n" + envHelp,
		Example: `  keyturn service-user update rotator --role pam_admin --role security_admin
  keyturn service-user update rotator --all-folders
  keyturn service-user update rotator --status DISABLED`,
		Args: cobra.ExactArgs(1),
		RunE: e.run(&out, func(cmd *cobra.Command, args []string) (err error) {
			if name, err = nameArg(args); err != nil {
				return err
			}
			ch = UserChange{}
			if cmd.Flags().Changed("status") {
				ch.Status = &status
			}
			switch {
			case len(roles) > 0 && noRoles:
				return Usagef("give --role or --no-roles, not both")
			case len(roles) > 0:
				ch.Roles = &roles
			case noRoles:
				ch.Roles = &[]string{}
			}
			switch {
			case len(folders) > 0 && allFolders:
				return Usagef("give --folder or --all-folders, not both")
			case len(folders) > 0:
				ch.Folders = &folders
			case allFolders:
				ch.Folders = &[]string{}
			}
			if ch.Status == nil && ch.Roles == nil && ch.Folders == nil {
				return Usagef("nothing to change: give --status, --role, --no-roles, --folder or --all-folders")
			}
			return nil
		}, func(ctx context.Context, c *Client, inv *invocation) error {
			u, raw, err := c.UpdateUser(ctx, name, ch)
			if err != nil {
				return err
			}
			return inv.writeRaw(raw, func(w io.Writer) error { return writeUser(w, u) })
		}),
	}
	f := cmd.Flags()
	f.StringVar(&status, "status", "", "new status: ACTIVE, DISABLED or DELETED")
	completeFlag(cmd, "status", userStatusValues...)
	f.StringArrayVar(&roles, "role", nil, "a role the user is to have; together they replace its roles (repeatable)")
	completeFlag(cmd, "role", roleValues()...)
	f.BoolVar(&noRoles, "no-roles", false, "take every role away")
	f.StringArrayVar(&folders, "folder", nil, "a folder prefix the roles are limited to; together they replace its folders (repeatable)")
	f.BoolVar(&allFolders, "all-folders", false, "lift the folder limits: the roles apply to every folder")
	AddOutputFlag(cmd, &out)
	return cmd
}

func (e *env) keyRotate() *cobra.Command {
	var name string
	var out Output
	cmd := &cobra.Command{
		Use:   "rotate NAME",
		Short: "Issue a new API key to a service user; its older keys expire soon",
		Long: fmt.Sprintf(`Issue a new API key to a service user and print its id and secret:

  key_id: ...
  key_secret: ...

The secret is shown this once and cannot be read again: store it now. Every older key of the
user stops working %s later (use "key delete" to end one at once).
With -o json the API's answer {id, issued_at, expires_at, last_used, secret} is printed;
expires_at is null for a key that does not expire.
`, graceText) + envHelp,
		Example: `  keyturn service-user key rotate rotator -o json > rotator-key.json`,
		Args:    cobra.ExactArgs(1),
		RunE: e.run(&out, nameTo(&name), func(ctx context.Context, c *Client, inv *invocation) error {
			k, _, err := c.RotateUserKey(ctx, name)
			if err != nil {
				return err
			}
			return inv.write(issuedKeyView(k), func(w io.Writer) error {
				fmt.Fprintln(inv.cmd.ErrOrStderr(), "warning: the key secret is shown only once, store it now"+
					olderKeysText(ctx, c, name, k))
				_, err := fmt.Fprintf(w, "key_id: %s\nkey_secret: %s\n", clean(k.ID), clean(k.Secret))
				return err
			})
		}),
	}
	AddOutputFlag(cmd, &out)
	return cmd
}

func (e *env) keyList() *cobra.Command {
	var name string
	var out Output
	cmd := &cobra.Command{
		Use:   "list NAME",
		Short: "List a service user's API keys (never their secrets)",
		Long: `List a service user's API keys: id, when issued, when they expire ("never" when they do
not) and when last used ("-" when never). With -o json: the API's {"list": [...]}, expires_at
null for a key that does not expire.
` + envHelp,
		Args: cobra.ExactArgs(1),
		RunE: e.run(&out, nameTo(&name), func(ctx context.Context, c *Client, inv *invocation) error {
			keys, _, err := c.UserKeys(ctx, name)
			if err != nil {
				return err
			}
			views := make([]keyView, len(keys))
			for i, k := range keys {
				views[i] = newKeyView(k)
			}
			return inv.write(map[string][]keyView{"list": views}, tableText("ID\tISSUED\tEXPIRES\tLAST_USED", keys, func(k Key) string {
				expires := "never"
				if !k.ExpiresAt.IsZero() {
					expires = timeText(k.ExpiresAt)
				}
				lastUsed := "-"
				if k.LastUsed != nil && !k.LastUsed.IsZero() {
					lastUsed = timeText(*k.LastUsed)
				}
				return fmt.Sprintf("%s\t%s\t%s\t%s", clean(k.ID), timeText(k.IssuedAt), expires, lastUsed)
			}))
		}),
	}
	AddOutputFlag(cmd, &out)
	return cmd
}

func (e *env) keyDelete() *cobra.Command {
	var name, keyID string
	var out Output
	cmd := &cobra.Command{
		Use:   "delete NAME KEY_ID",
		Short: "Delete a service user's API key; tokens minted from it stop working at once",
		Long: `Delete a service user's API key: it and every bearer token minted from it stop working at
once. With -o json: {"name": NAME, "key_id": KEY_ID, "deleted": true}.
` + envHelp,
		Args: cobra.ExactArgs(2),
		RunE: e.run(&out, func(_ *cobra.Command, args []string) (err error) {
			if name, err = nameArg(args); err != nil {
				return err
			}
			keyID, err = idArg(args[1], "key id")
			return err
		}, func(ctx context.Context, c *Client, inv *invocation) error {
			if err := c.DeleteUserKey(ctx, name, keyID); err != nil {
				return err
			}
			return inv.write(map[string]any{"name": name, "key_id": keyID, "deleted": true},
				textf("deleted key %s of %s\n", clean(keyID), clean(name)))
		}),
	}
	AddOutputFlag(cmd, &out)
	return cmd
}

// keyView is an API key as -o json and yaml show it: as the API answers, but with expires_at
// null for a key that does not expire, where the API mirrors OPA's zero time
// (0001-01-01T00:00:00Z), as the table shows "never".
type keyView struct {
	ID        string     `json:"id"`
	IssuedAt  time.Time  `json:"issued_at"`
	ExpiresAt *time.Time `json:"expires_at"`
	LastUsed  *time.Time `json:"last_used"`
	Secret    string     `json:"secret,omitempty"` // only of a key just issued
}

func newKeyView(k Key) keyView {
	v := keyView{ID: k.ID, IssuedAt: k.IssuedAt, LastUsed: k.LastUsed}
	if !k.ExpiresAt.IsZero() {
		v.ExpiresAt = &k.ExpiresAt
	}
	return v
}

func issuedKeyView(k IssuedKey) keyView {
	v := newKeyView(k.Key)
	v.Secret = k.Secret
	return v
}

// olderKeysText says, after a key rotation, when the service user's older keys stop working:
// "" when it has none that still work (other than the key just issued), and a hedged text
// when its keys cannot be listed.
func olderKeysText(ctx context.Context, c *Client, name string, issued IssuedKey) string {
	keys, _, err := c.UserKeys(ctx, name)
	if err != nil {
		return fmt.Sprintf("; older keys of %s, if any, expire in %s", clean(name), graceText)
	}
	n := 0
	for _, k := range keys {
		if k.ID != issued.ID && (k.ExpiresAt.IsZero() || k.ExpiresAt.After(issued.IssuedAt)) {
			n++
		}
	}
	switch n {
	case 0:
		return ""
	case 1:
		return fmt.Sprintf("; the older key of %s expires in %s", clean(name), graceText)
	}
	return fmt.Sprintf("; the %d older keys of %s expire in %s", n, clean(name), graceText)
}

// graceText is how long older keys keep working after a rotation, as the server's auth
// service sets it: "48 h".
var graceText = strconv.FormatFloat(auth.OldKeyGrace.Hours(), 'f', -1, 64) + " h"

// rolesText shows roles in a table cell: comma-separated, or (none).
func rolesText(roles []Role) string {
	if len(roles) == 0 {
		return "(none)"
	}
	parts := make([]string, len(roles))
	for i, r := range roles {
		parts[i] = clean(string(r))
	}
	return strings.Join(parts, ",")
}

// foldersText shows folder grants in a table cell: comma-separated, or (all) when there are
// none, which grants every folder.
func foldersText(folders []string) string {
	if len(folders) == 0 {
		return "(all)"
	}
	parts := make([]string, len(folders))
	for i, f := range folders {
		parts[i] = clean(f)
	}
	return strings.Join(parts, ",")
}

// writeUser writes a service user as text.
func writeUser(w io.Writer, u User) error {
	tw := newTable(w)
	fmt.Fprintf(tw, "Name:\t%s\n", clean(u.Name))
	fmt.Fprintf(tw, "ID:\t%s\n", clean(u.ID))
	fmt.Fprintf(tw, "Team:\t%s\n", clean(u.TeamName))
	fmt.Fprintf(tw, "Type:\t%s\n", clean(u.UserType))
	fmt.Fprintf(tw, "Status:\t%s\n", clean(u.Status))
	fmt.Fprintf(tw, "Roles:\t%s\n", rolesText(u.Roles))
	fmt.Fprintf(tw, "Folders:\t%s\n", foldersText(u.Folders))
	if u.DeletedAt != nil && !u.DeletedAt.IsZero() {
		fmt.Fprintf(tw, "Deleted:\t%s\n", timeText(*u.DeletedAt))
	}
	if u.Details != nil {
		if b, err := json.Marshal(u.Details); err == nil {
			fmt.Fprintf(tw, "Details:\t%s\n", clean(string(b)))
		}
	}
	return tw.Flush()
}
