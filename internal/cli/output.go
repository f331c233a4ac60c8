package cli

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/spf13/cobra"
)

// mask replaces a hidden value in text output.
const mask = "********"

// hiddenTypes are the field types whose values text output masks unless --reveal is given.
var hiddenTypes = map[string]bool{
	"password":    true,
	"secret":      true,
	"pinCode":     true,
	"oneTimeCode": true,
	"keyPair":     true,
}

// output is the value of a command's -o/--output flag.
type output struct{ format string }

// addOutputFlag adds the -o/--output flag to cmd, its value kept in o.
func addOutputFlag(cmd *cobra.Command, o *output) {
	cmd.Flags().StringVarP(&o.format, "output", "o", "table", "output format: table (text) or json")
}

// json reports whether JSON output was asked for, or a usage error for an unknown format.
func (o *output) json() (bool, error) {
	switch o.format {
	case "json":
		return true, nil
	case "table", "text", "":
		return false, nil
	}
	return false, Usagef("--output %q: use table or json", o.format)
}

// writeRawJSON writes a JSON document indented, ending with a newline.
func writeRawJSON(w io.Writer, raw []byte) error {
	var buf bytes.Buffer
	if err := json.Indent(&buf, bytes.TrimSpace(raw), "", "  "); err != nil {
		return fmt.Errorf("the server's answer is not JSON: %w", err)
	}
	buf.WriteByte('\n')
	_, err := w.Write(buf.Bytes())
	return err
}

// writeJSON writes v as indented JSON.
func writeJSON(w io.Writer, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	_, err = w.Write(append(b, '\n'))
	return err
}

// writeRaw writes raw, the API's answer, as indented JSON when -o json was given, and else
// writes text output with text.
func (inv *invocation) writeRaw(raw []byte, text func(w io.Writer) error) error {
	if inv.asJSON {
		return writeRawJSON(inv.w, raw)
	}
	return text(inv.w)
}

// write writes v as indented JSON when -o json was given, and else writes text output with
// text.
func (inv *invocation) write(v any, text func(w io.Writer) error) error {
	if inv.asJSON {
		return writeJSON(inv.w, v)
	}
	return text(inv.w)
}

// textf returns text output of one formatted message, for invocation.write and
// invocation.writeRaw.
func textf(format string, a ...any) func(w io.Writer) error {
	return func(w io.Writer) error {
		_, err := fmt.Fprintf(w, format, a...)
		return err
	}
}

// tableText returns text output of rows as a table: the header, then a line for each row as
// line shows it, cells separated by tabs. Lines do not end in spaces.
func tableText[T any](header string, rows []T, line func(T) string) func(w io.Writer) error {
	return func(w io.Writer) error {
		tw := newTable(&trimWriter{w: w})
		fmt.Fprintln(tw, header)
		for _, r := range rows {
			fmt.Fprintln(tw, line(r))
		}
		return tw.Flush()
	}
}

// writeList writes rows as JSON {"list": rows} when -o json was given, and else as a table
// (see tableText).
func writeList[T any](inv *invocation, rows []T, header string, line func(T) string) error {
	return inv.write(map[string][]T{"list": rows}, tableText(header, rows, line))
}

// clean makes text safe for a table cell: text with control characters (newlines, tabs,
// terminal escapes), invalid UTF-8 or leading or trailing spaces is shown Go-quoted.
func clean(s string) string {
	if !utf8.ValidString(s) || strings.IndexFunc(s, unicode.IsControl) >= 0 || strings.TrimSpace(s) != s {
		return strconv.Quote(s)
	}
	return s
}

// valueText shows one field value: a JSON string as its text, anything else as compact JSON.
func valueText(v json.RawMessage) string {
	var s string
	if json.Unmarshal(v, &s) == nil {
		return clean(s)
	}
	var buf bytes.Buffer
	if json.Compact(&buf, v) != nil {
		return clean(string(v))
	}
	return clean(buf.String())
}

// fieldText shows a field's values, masked when its type is hidden and reveal is false.
func fieldText(f Field, reveal bool) string {
	if len(f.Value) == 0 {
		return ""
	}
	if hiddenTypes[f.Type] && !reveal {
		return mask
	}
	parts := make([]string, len(f.Value))
	for i, v := range f.Value {
		parts[i] = valueText(v)
	}
	return strings.Join(parts, ", ")
}

// fieldName is how a field is named in text output, as --field and --custom take it.
func fieldName(f Field, custom bool) string {
	switch {
	case custom && f.Label != "" && f.Type == "text":
		return clean(f.Label)
	case f.Label != "":
		return clean(f.Type + "." + f.Label)
	}
	return clean(f.Type)
}

func timeText(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339)
}

// apiTimeText reformats an RFC 3339 time from the API like timeText, or shows it as given.
func apiTimeText(s string) string {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return clean(s)
	}
	return timeText(t)
}

func newTable(w io.Writer) *tabwriter.Writer {
	return tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
}

// trimWriter removes the spaces tabwriter pads the last cell of a line with. Cells never end
// in spaces of their own (clean quotes those), so nothing is lost.
type trimWriter struct {
	w       io.Writer
	pending []byte // spaces not yet known to be followed by more text on their line
}

func (t *trimWriter) Write(p []byte) (int, error) {
	var out []byte
	for _, c := range p {
		switch c {
		case ' ':
			t.pending = append(t.pending, c)
			continue
		case '\n':
			t.pending = t.pending[:0]
		default:
			out = append(out, t.pending...)
			t.pending = t.pending[:0]
		}
		out = append(out, c)
	}
	if _, err := t.w.Write(out); err != nil {
		return 0, err
	}
	return len(p), nil
}

// writeRecord writes a record as text.
func writeRecord(w io.Writer, rec Record, reveal bool) error {
	tw := newTable(&trimWriter{w: w})
	fmt.Fprintf(tw, "UID:\t%s\n", clean(rec.UID))
	fmt.Fprintf(tw, "Type:\t%s\n", clean(rec.Type))
	fmt.Fprintf(tw, "Title:\t%s\n", clean(rec.Title))
	fmt.Fprintf(tw, "Folder:\t%s\n", clean(rec.Folder))
	fmt.Fprintf(tw, "Revision:\t%d\n", rec.Revision)
	fmt.Fprintf(tw, "Created:\t%s\n", timeText(rec.CreatedAt))
	fmt.Fprintf(tw, "Updated:\t%s\n", timeText(rec.UpdatedAt))
	for _, group := range []struct {
		name   string
		fields []Field
		custom bool
	}{{"Fields:", rec.Fields, false}, {"Custom:", rec.Custom, true}} {
		if len(group.fields) == 0 {
			continue
		}
		fmt.Fprintf(tw, "%s\t\n", group.name)
		for _, f := range group.fields {
			fmt.Fprintf(tw, "  %s\t%s\n", fieldName(f, group.custom), fieldText(f, reveal))
		}
	}
	if rec.Notes != "" {
		fmt.Fprintln(tw, "Notes:")
		for _, line := range strings.Split(strings.TrimRight(rec.Notes, "\n"), "\n") {
			fmt.Fprintf(tw, "  %s\n", cleanLine(line))
		}
	}
	return tw.Flush()
}

// cleanLine makes one line of notes safe to print: control characters other than tab are
// shown escaped, and a tab becomes spaces (it would otherwise split a table cell).
func cleanLine(s string) string {
	if !utf8.ValidString(s) {
		return strconv.Quote(s)
	}
	var b strings.Builder
	for _, r := range s {
		switch {
		case r == '\t':
			b.WriteString("    ")
		case unicode.IsControl(r):
			q := strconv.QuoteRune(r)
			b.WriteString(q[1 : len(q)-1])
		default:
			b.WriteRune(r)
		}
	}
	return b.String()
}
