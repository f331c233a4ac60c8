package cli

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/rivo/uniseg"
	"github.com/spf13/cobra"
	"go.yaml.in/yaml/v3"
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

// Format is an output format a command's -o/--output flag names.
type Format int

// The output formats: a table or other text for people; the API's JSON; that JSON as YAML.
const (
	FormatTable Format = iota
	FormatJSON
	FormatYAML
)

// outputFormats are the values -o takes, for help and shell completion.
var outputFormats = []string{"table", "json", "yaml"}

// Output is the value of a command's -o/--output flag.
type Output struct{ format string }

// AddOutputFlag adds the -o/--output flag to cmd, its value kept in o, with its values offered
// to shell completion. Its default is table.
func AddOutputFlag(cmd *cobra.Command, o *Output) { AddOutputFlagDefault(cmd, o, "table") }

// AddOutputFlagDefault is AddOutputFlag with another default format, for commands whose output
// was JSON before they took -o.
func AddOutputFlagDefault(cmd *cobra.Command, o *Output, def string) {
	cmd.Flags().StringVarP(&o.format, "output", "o", def, "output format: table (text), json or yaml")
	completeFlag(cmd, "output", outputFormats...)
}

// Format returns the format asked for: table (or text, or empty), json or yaml; another is a
// usage error naming the allowed ones.
func (o *Output) Format() (Format, error) {
	switch o.format {
	case "json":
		return FormatJSON, nil
	case "yaml":
		return FormatYAML, nil
	case "table", "text", "":
		return FormatTable, nil
	}
	return FormatTable, Usagef("--output %q: use table, json or yaml", o.format)
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

// writeRawYAML writes a JSON document as YAML: the same keys in the same order, the same
// values. Scalars keep their JSON text (numbers are not reformatted); strings are quoted only
// where YAML needs it.
func writeRawYAML(w io.Writer, raw []byte) error {
	var doc yaml.Node
	if err := yaml.Unmarshal(bytes.TrimSpace(raw), &doc); err != nil {
		return fmt.Errorf("the server's answer is not JSON: %w", err)
	}
	blockStyle(&doc)
	// The encoder escapes every character beyond U+FFFF (most emoji) as \UXXXXXXXX. Each
	// becomes a private-use character the document does not hold, which it writes as it is,
	// and then is put back.
	astral := newAstralSwap(&doc)
	astral.hide(&doc)
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(&doc); err != nil {
		return fmt.Errorf("write the answer as YAML: %w", err)
	}
	if err := enc.Close(); err != nil {
		return fmt.Errorf("write the answer as YAML: %w", err)
	}
	_, err := io.WriteString(w, astral.restore(buf.String()))
	return err
}

// astralSwap stands private-use characters of the Basic Multilingual Plane in for characters
// beyond it, for the YAML encoder.
type astralSwap struct {
	free  []rune        // private-use characters not in the document, not yet taken
	stand map[rune]rune // a character beyond U+FFFF: the one standing in for it
}

// newAstralSwap returns a swap for the document doc, whose own characters are never taken.
func newAstralSwap(doc *yaml.Node) *astralSwap {
	used := map[rune]bool{}
	var walk func(n *yaml.Node)
	walk = func(n *yaml.Node) {
		for _, r := range n.Value {
			used[r] = true
		}
		for _, c := range n.Content {
			walk(c)
		}
	}
	walk(doc)
	s := &astralSwap{stand: map[rune]rune{}}
	for r := rune(0xE000); r <= 0xF8FF; r++ {
		if !used[r] {
			s.free = append(s.free, r)
		}
	}
	return s
}

// hide replaces, in every scalar of n, each character beyond U+FFFF by its stand-in, as long
// as stand-ins are left (the rest stay, and are escaped).
func (s *astralSwap) hide(n *yaml.Node) {
	if strings.IndexFunc(n.Value, func(r rune) bool { return r > 0xFFFF }) >= 0 {
		n.Value = strings.Map(func(r rune) rune {
			if r <= 0xFFFF {
				return r
			}
			if in, ok := s.stand[r]; ok {
				return in
			}
			if len(s.free) == 0 {
				return r
			}
			in := s.free[0]
			s.free = s.free[1:]
			s.stand[r] = in
			return in
		}, n.Value)
	}
	for _, c := range n.Content {
		s.hide(c)
	}
}

// restore puts the characters the stand-ins stood for back into text.
func (s *astralSwap) restore(text string) string {
	if len(s.stand) == 0 {
		return text
	}
	pairs := make([]string, 0, 2*len(s.stand))
	for r, in := range s.stand {
		pairs = append(pairs, string(in), string(r))
	}
	return strings.NewReplacer(pairs...).Replace(text)
}

// blockStyle clears the JSON (flow, double-quoted) styles of a parsed document, so that the
// encoder writes block YAML and quotes a string only where it must.
func blockStyle(n *yaml.Node) {
	n.Style = 0
	for _, c := range n.Content {
		blockStyle(c)
	}
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

// writeAs writes v in format f (JSON or YAML): YAML is v's JSON converted, so that both have
// the same field names.
func writeAs(w io.Writer, f Format, v any) error {
	if f == FormatYAML {
		b, err := json.Marshal(v)
		if err != nil {
			return err
		}
		return writeRawYAML(w, b)
	}
	return writeJSON(w, v)
}

// writeRawAs writes raw, a JSON document, in format f (JSON or YAML).
func writeRawAs(w io.Writer, f Format, raw []byte) error {
	if f == FormatYAML {
		return writeRawYAML(w, raw)
	}
	return writeRawJSON(w, raw)
}

// WriteAs writes v as indented JSON, or as YAML with the same field names, for the commands
// outside this package that take -o.
func WriteAs(w io.Writer, f Format, v any) error { return writeAs(w, f, v) }

// writeRaw writes raw, the API's answer, as indented JSON or as YAML when -o json or yaml was
// given, and else writes text output with text.
func (inv *invocation) writeRaw(raw []byte, text func(w io.Writer) error) error {
	if inv.format != FormatTable {
		return writeRawAs(inv.w, inv.format, raw)
	}
	return text(inv.w)
}

// write writes v as indented JSON or as YAML when -o json or yaml was given, and else writes
// text output with text.
func (inv *invocation) write(v any, text func(w io.Writer) error) error {
	if inv.format != FormatTable {
		return writeAs(inv.w, inv.format, v)
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
		tw := newTable(w)
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

// cellPadding is the space between two columns of a table.
const cellPadding = 2

// table lays text out in columns as text/tabwriter does (with no minimum width and two spaces
// of padding), but measures each cell by its width on a terminal, so that columns stay
// aligned when cells hold wide characters (CJK, emoji) or zero-width ones. A cell ends in a
// tab; the last cell of a line is not aligned; a column's cells are aligned over a block of
// consecutive lines that have a cell in that column. Lines do not end in padding.
type table struct {
	w   io.Writer
	buf bytes.Buffer
}

func newTable(w io.Writer) *table { return &table{w: w} }

// Write adds text to the table; nothing is written before Flush.
func (t *table) Write(p []byte) (int, error) { return t.buf.Write(p) }

// Flush writes the text added so far, aligned.
func (t *table) Flush() error {
	text := t.buf.String()
	t.buf.Reset()
	if text == "" {
		return nil
	}
	lines := strings.Split(text, "\n")
	endsInNewline := lines[len(lines)-1] == ""
	if endsInNewline {
		lines = lines[:len(lines)-1]
	}
	rows := make([][]string, len(lines))
	widths := make([][]int, len(lines)) // widths[i][c]: the width of column c on line i
	for i, l := range lines {
		rows[i] = strings.Split(l, "\t")
		widths[i] = make([]int, len(rows[i])-1)
	}
	// As tabwriter: a block of lines with a cell in column col (one that ends in a tab) has
	// that column as wide as its widest cell, and its lines are then laid out from col+1.
	var layout func(line0, line1, col int)
	layout = func(line0, line1, col int) {
		for i := line0; i < line1; i++ {
			if col >= len(rows[i])-1 {
				continue
			}
			j, width := i, 0
			for ; j < line1 && col < len(rows[j])-1; j++ {
				width = max(width, displayWidth(rows[j][col])+cellPadding)
			}
			for k := i; k < j; k++ {
				widths[k][col] = width
			}
			layout(i, j, col+1)
			i = j // line j, if any, has no cell in col
		}
	}
	layout(0, len(rows), 0)
	var b strings.Builder
	for i, row := range rows {
		pad := 0 // padding owed, written only before more text on the line
		for c, cell := range row {
			if cell != "" {
				b.WriteString(strings.Repeat(" ", pad))
				b.WriteString(cell)
				pad = 0
			}
			if c < len(widths[i]) {
				pad += widths[i][c] - displayWidth(cell)
			}
		}
		if i < len(rows)-1 || endsInNewline {
			b.WriteByte('\n')
		}
	}
	_, err := io.WriteString(t.w, b.String())
	return err
}

// displayWidth is how many columns s takes on a terminal: two for each wide character (CJK,
// most emoji), none for combining marks and joiners.
func displayWidth(s string) int { return uniseg.StringWidth(s) }

// writeRecord writes a record as text.
func writeRecord(w io.Writer, rec Record, reveal bool) error {
	tw := newTable(w)
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
