package fault_test

import (
	"errors"
	"fmt"
	"testing"

	"github.com/keyturn/keyturn/internal/fault"
)

// TestSentinel checks that errors made from a sentinel match it with errors.Is (wrapped too),
// carry its kind and code for the API, and never match another sentinel with the same code.
func TestSentinel(t *testing.T) {
	stale := fault.NewSentinel(fault.Conflict, "stale_revision")
	sameCode := fault.NewSentinel(fault.Conflict, "stale_revision")
	err := fmt.Errorf("save: %w", stale.New("record %s is at revision %d", "r1", 3))
	if !errors.Is(err, stale) {
		t.Fatal("errors.Is does not find the sentinel an error was made from")
	}
	if errors.Is(err, sameCode) {
		t.Error("errors.Is matches another sentinel with the same code: callers would be comparing codes again")
	}
	fe, ok := fault.As(err)
	if !ok || fe.Kind != fault.Conflict || fe.Code != "stale_revision" || fe.Message != "record r1 is at revision 3" {
		t.Fatalf("the API would render %+v", fe)
	}
	if errors.Is(fault.New(fault.Conflict, "stale_revision", "x"), stale) {
		t.Error("an error that only has the code matches the sentinel")
	}
	fe = stale.New("changed")
	fe.Kind, fe.Err = fault.Unavailable, errors.New("cause")
	if !errors.Is(fe, stale) || fe.Unwrap() == nil {
		t.Error("an error made from a sentinel, with its kind and cause set, no longer matches it")
	}
	if stale.Code() != "stale_revision" {
		t.Errorf("Code %q", stale.Code())
	}
}
