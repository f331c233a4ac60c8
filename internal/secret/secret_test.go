package secret

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"testing"
)

func TestSecretNeverPrints(t *testing.T) {
	const value = "hunter2-very-secret"
	s := FromString(value)
	var logs bytes.Buffer
	logger := slog.New(slog.NewJSONHandler(&logs, nil))
	logger.Info("msg", "s", s, "nested", struct{ P Secret }{s})
	js, err := json.Marshal(map[string]any{"s": s})
	if err != nil {
		t.Fatal(err)
	}
	outs := []string{
		fmt.Sprint(s), fmt.Sprintf("%v %+v %#v %s %q %x", s, s, s, s, s, s),
		fmt.Sprintf("%v", struct{ P Secret }{s}), string(js), logs.String(),
		fmt.Errorf("wrapped: %v", s).Error(),
	}
	for _, out := range outs {
		if strings.Contains(out, value) {
			t.Errorf("secret leaked: %s", out)
		}
		if !strings.Contains(out, Redacted) {
			t.Errorf("no redaction marker in %q", out)
		}
	}
	if s.Reveal() != value {
		t.Fatalf("Reveal = %q", s.Reveal())
	}
}

func TestSecretEqualAndClear(t *testing.T) {
	a, b := FromString("abc"), New([]byte("abc"))
	if !a.Equal(b) || a.Equal(FromString("abd")) {
		t.Fatal("Equal is wrong")
	}
	b.Clear()
	if a.Equal(b) || b.Reveal() != "\x00\x00\x00" {
		t.Fatalf("Clear did not overwrite: %q", b.Reveal())
	}
	if !(Secret{}).IsZero() || a.IsZero() {
		t.Fatal("IsZero is wrong")
	}
}
