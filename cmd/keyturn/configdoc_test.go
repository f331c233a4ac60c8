package main

import (
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/keyturn/keyturn/internal/config"
)

// configReference is the page that lists every setting, flag and environment variable.
const configReference = "../../docs/configuration.md"

// refDoc is the configuration reference, parsed: its text, the text under each command's
// heading, and its table rows.
type refDoc struct {
	text     string
	sections map[string]string // "keyturn record create" -> its section (sub-headings included)
	rows     []refRow
}

// refRow is one table row: its cells by the table's header, and the command section it is in.
type refRow struct {
	cells   map[string]string
	first   string // the first cell
	section string
}

var commandHeading = regexp.MustCompile("^`(keyturn(?: [a-z][a-z-]*)*)`$")

// parseReference splits the reference into command sections and table rows. A command's
// section runs from its heading ("## `keyturn server`") to the next heading of the same or a
// higher level.
func parseReference(t *testing.T, text string) refDoc {
	t.Helper()
	doc := refDoc{text: text, sections: map[string]string{}}
	lines := strings.Split(text, "\n")
	type open struct {
		path  string
		level int
		start int
	}
	var stack []open
	closeTo := func(level, end int) {
		for len(stack) > 0 && stack[len(stack)-1].level >= level {
			o := stack[len(stack)-1]
			stack = stack[:len(stack)-1]
			doc.sections[o.path] = strings.Join(lines[o.start:end], "\n")
		}
	}
	var header []string
	inFence := false
	for i, line := range lines {
		if strings.HasPrefix(line, "```") {
			inFence = !inFence
			continue
		}
		if inFence {
			continue
		}
		if strings.HasPrefix(line, "#") {
			level := len(line) - len(strings.TrimLeft(line, "#"))
			closeTo(level, i)
			if m := commandHeading.FindStringSubmatch(strings.TrimSpace(line[level:])); m != nil {
				if _, dup := doc.sections[m[1]]; dup {
					t.Errorf("%s: two sections for `%s`", configReference, m[1])
				}
				stack = append(stack, open{path: m[1], level: level, start: i + 1})
			}
			header = nil
			continue
		}
		if !strings.HasPrefix(line, "|") {
			header = nil
			continue
		}
		cells := strings.Split(strings.Trim(strings.TrimSpace(line), "|"), "|")
		for j := range cells {
			cells[j] = strings.TrimSpace(cells[j])
		}
		switch {
		case header == nil:
			header = cells
		case strings.Trim(strings.Join(cells, ""), "-: ") == "":
			// the header's separator
		default:
			row := refRow{cells: map[string]string{}, first: cells[0]}
			for j, c := range cells {
				if j < len(header) {
					row.cells[header[j]] = c
				}
			}
			if len(stack) > 0 {
				// Under a plain sub-heading ("### Server keys"), still the command's.
				row.section = stack[len(stack)-1].path
			}
			doc.rows = append(doc.rows, row)
		}
	}
	closeTo(0, len(lines))
	return doc
}

// commandTree returns every command a user can run, with the commands cobra adds when it runs
// (completion, and the --version flag), but not cobra's help command.
func commandTree() []*cobra.Command {
	root := newRoot(io.Discard, io.Discard)
	root.InitDefaultCompletionCmd()
	root.InitDefaultVersionFlag()
	var all []*cobra.Command
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		if c.Hidden || c.Name() == "help" {
			return
		}
		all = append(all, c)
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	walk(root)
	return all
}

// configKeys returns the koanf keys of the struct type t, nested ones as "parent.key" and
// those of list elements as "list[].key", with the type of each.
func configKeys(t reflect.Type, prefix string) []string {
	var keys []string
	for f := range t.Fields() {
		tag := f.Tag.Get("koanf")
		if tag == "" {
			continue
		}
		keys = append(keys, prefix+tag)
		switch {
		case f.Type.Kind() == reflect.Struct:
			keys = append(keys, configKeys(f.Type, prefix+tag+".")...)
		case f.Type.Kind() == reflect.Slice && f.Type.Elem().Kind() == reflect.Struct:
			keys = append(keys, configKeys(f.Type.Elem(), prefix+tag+"[].")...)
		}
	}
	return keys
}

// sourceEnvVars returns every KEYTURN_* name written in the non-test Go files under the
// repository's cmd and internal directories: the variables something reads.
func sourceEnvVars(t *testing.T) []string {
	t.Helper()
	name := regexp.MustCompile(`\bKEYTURN_[A-Z][A-Z0-9_]*[A-Z0-9]\b`)
	seen := map[string]bool{}
	for _, dir := range []string{"../../cmd", "../../internal"} {
		err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
				return err
			}
			b, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			for _, m := range name.FindAllString(string(b), -1) {
				seen[m] = true
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	names := slices.Sorted(func(yield func(string) bool) {
		for n := range seen {
			if !yield(n) {
				return
			}
		}
	})
	if len(names) == 0 {
		t.Fatal("found no KEYTURN_ variable in the source: the scan is broken")
	}
	return names
}

// literal returns the value of a cell that is one code span, such as "`5m`".
func literal(cell string) (string, bool) {
	if len(cell) >= 2 && strings.HasPrefix(cell, "`") && strings.HasSuffix(cell, "`") && strings.Count(cell, "`") == 2 {
		return cell[1 : len(cell)-1], true
	}
	return "", false
}

// sameDefault reports whether the reference's default doc means the flag default def:
// the same text, the same duration (1h and 1h0m0s) or the same number (20 and 20.0).
func sameDefault(doc, def string) bool {
	if doc == def {
		return true
	}
	if a, err := time.ParseDuration(doc); err == nil {
		b, err := time.ParseDuration(def)
		return err == nil && a == b
	}
	if a, err := strconv.ParseFloat(doc, 64); err == nil {
		b, err := strconv.ParseFloat(def, 64)
		return err == nil && a == b
	}
	return false
}

// flagCell reports whether a table cell names the flag f: "`--name`", or "`-x`, `--name`".
func flagCell(cell string, f *pflag.Flag) bool {
	long := "`--" + f.Name + "`"
	if f.Shorthand != "" {
		return cell == "`-"+f.Shorthand+"`, "+long
	}
	return cell == long
}

// TestConfigurationReference fails when docs/configuration.md misses a server configuration
// key (YAML), a flag of any command, or an environment variable that keyturn reads, or when a
// default it states differs from the code's.
func TestConfigurationReference(t *testing.T) {
	b, err := os.ReadFile(configReference)
	if err != nil {
		t.Fatal(err)
	}
	doc := parseReference(t, string(b))

	// Every flag of every command, in that command's section, in a table row of its own.
	var server *cobra.Command
	tree := commandTree()
	for documented := range doc.sections {
		if !slices.ContainsFunc(tree, func(c *cobra.Command) bool { return c.CommandPath() == documented }) {
			t.Errorf("%s: section `%s` documents no command", configReference, documented)
		}
	}
	for _, c := range tree {
		path := c.CommandPath()
		if path == "keyturn server" {
			server = c
		}
		if _, ok := doc.sections[path]; !ok {
			t.Errorf("%s: no section \"### `%s`\"", configReference, path)
			continue
		}
		c.LocalFlags().VisitAll(func(f *pflag.Flag) {
			if f.Name == "help" {
				return
			}
			var row *refRow
			for i := range doc.rows {
				r := &doc.rows[i]
				if r.section != path {
					continue
				}
				for _, cell := range r.cells {
					if flagCell(cell, f) {
						row = r
					}
				}
			}
			if row == nil {
				want := "`--" + f.Name + "`"
				if f.Shorthand != "" {
					want = "`-" + f.Shorthand + "`, " + want
				}
				t.Errorf("%s, `%s`: flag %s is not in a table row of the section", configReference, path, want)
				return
			}
			if v, ok := literal(row.cells["default"]); ok && !sameDefault(v, f.DefValue) {
				t.Errorf("%s, `%s`: --%s defaults to %q, the reference says `%s`", configReference, path, f.Name, f.DefValue, v)
			}
		})
	}
	if server == nil {
		t.Fatal("the command tree has no server command")
	}

	// Every configuration key, with its flag, environment variable and default in its row.
	serverEnv := map[string]bool{}
	for _, e := range config.EnvVars() {
		serverEnv[e] = true
	}
	keys := configKeys(reflect.TypeFor[config.Config](), "")
	for _, key := range keys {
		var row *refRow
		for i := range doc.rows {
			if doc.rows[i].first == "`"+key+"`" {
				row = &doc.rows[i]
			}
		}
		if row == nil {
			t.Errorf("%s: configuration key `%s` has no row", configReference, key)
			continue
		}
		if f := server.Flags().Lookup(strings.ReplaceAll(key, "_", "-")); f != nil {
			if row.cells["flag"] != "`--"+f.Name+"`" {
				t.Errorf("%s: the row of `%s` says flag %q, want `--%s`", configReference, key, row.cells["flag"], f.Name)
			}
			v, ok := literal(row.cells["default"])
			switch {
			case f.DefValue != "" && !ok:
				t.Errorf("%s: the row of `%s` says default %q, want `%s`", configReference, key, row.cells["default"], f.DefValue)
			case ok && !sameDefault(v, f.DefValue):
				t.Errorf("%s: `%s` defaults to %q, the reference says `%s`", configReference, key, f.DefValue, v)
			}
		}
		if env := "KEYTURN_" + strings.ToUpper(key); serverEnv[env] && row.cells["environment"] != "`"+env+"`" {
			t.Errorf("%s: the row of `%s` says environment %q, want `%s`", configReference, key, row.cells["environment"], env)
		}
	}
	// And no row for a key that is gone.
	for _, r := range doc.rows {
		if _, isKeyTable := r.cells["key"]; !isKeyTable {
			continue
		}
		if v, ok := literal(r.first); !ok || !slices.Contains(keys, v) {
			t.Errorf("%s: row %s names no configuration key", configReference, r.first)
		}
	}

	// Every environment variable: the server's and any KEYTURN_* the code names.
	vars := append(config.EnvVars(), sourceEnvVars(t)...)
	slices.Sort(vars)
	for _, v := range slices.Compact(vars) {
		if !strings.Contains(doc.text, "`"+v+"`") {
			t.Errorf("%s: environment variable `%s` is not documented", configReference, v)
		}
	}
}
