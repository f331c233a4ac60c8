// Package jsonkeys reads the keys of a JSON object in the order the text has them, for tests
// that check a document's key order (encoding/json's maps forget it). It imports nothing of
// keyturn, so every package's tests can use it.
package jsonkeys

import (
	"bytes"
	"encoding/json"
	"testing"
)

// Of returns the keys of the JSON object raw in their order in the text; it fails the test
// when raw is not an object.
func Of(tb testing.TB, raw []byte) []string {
	tb.Helper()
	d := json.NewDecoder(bytes.NewReader(raw))
	if tok, err := d.Token(); err != nil || tok != json.Delim('{') {
		tb.Fatalf("not a JSON object: %s", raw)
	}
	var keys []string
	for d.More() {
		tok, err := d.Token()
		if err != nil {
			tb.Fatal(err)
		}
		keys = append(keys, tok.(string))
		var skip json.RawMessage
		if err := d.Decode(&skip); err != nil {
			tb.Fatal(err)
		}
	}
	return keys
}
