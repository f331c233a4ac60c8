package app

import (
	"maps"
	"slices"
	"testing"

	"github.com/keyturn/keyturn/internal/rotation"
)

// TestDefaultConnectorsMatchNames proves every connector settings may name is shipped, and
// nothing else: a name added to rotation.ConnectorNames without wiring (or the reverse) fails.
func TestDefaultConnectorsMatchNames(t *testing.T) {
	got := slices.Sorted(maps.Keys(DefaultConnectors()))
	want := slices.Sorted(slices.Values(rotation.ConnectorNames))
	if !slices.Equal(got, want) {
		t.Fatalf("DefaultConnectors has %v, rotation.ConnectorNames %v", got, want)
	}
	for _, name := range []string{"mysql", "ldap"} {
		if !slices.Contains(got, name) {
			t.Fatalf("no %s connector in %v", name, got)
		}
	}
}
