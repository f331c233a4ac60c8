package sink_test

import (
	"context"
	"encoding/json"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/keyturn/keyturn/internal/audit"
	"github.com/keyturn/keyturn/internal/audit/sink"
)

// A batch that cannot be written whole (here: past the process's file size limit, as a full
// disk would) leaves no half line behind, so that the file stays one event a line.
func TestJSONLCutsOffAHalfWrittenBatch(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	s, err := sink.NewJSONL(path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	if err := s.Send(ctx, events(1, 1, audit.RecordCreated)); err != nil {
		t.Fatal(err)
	}
	st, _ := os.Stat(path)

	signal.Ignore(syscall.SIGXFSZ) // a write past the limit fails with EFBIG instead
	defer signal.Reset(syscall.SIGXFSZ)
	var old syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_FSIZE, &old); err != nil {
		t.Fatal(err)
	}
	limit := old
	limit.Cur = uint64(st.Size()) + 100
	if err := syscall.Setrlimit(syscall.RLIMIT_FSIZE, &limit); err != nil {
		t.Skipf("cannot lower the file size limit: %v", err)
	}
	err = s.Send(ctx, events(2, 20, audit.RecordCreated))
	if err := syscall.Setrlimit(syscall.RLIMIT_FSIZE, &old); err != nil {
		t.Fatal(err)
	}
	if err == nil {
		t.Fatal("a batch past the file size limit was acknowledged")
	}
	if after, _ := os.Stat(path); after.Size() != st.Size() {
		t.Fatalf("the failed batch left %d bytes behind", after.Size()-st.Size())
	}
	if err := s.Send(ctx, events(2, 20, audit.RecordCreated)); err != nil {
		t.Fatal(err)
	}
	data, _ := os.ReadFile(path)
	lines := strings.Split(strings.TrimSuffix(string(data), "\n"), "\n")
	if len(lines) != 21 {
		t.Fatalf("%d lines, want 21", len(lines))
	}
	for i, line := range lines {
		var e audit.Exported
		if err := json.Unmarshal([]byte(line), &e); err != nil || e.Seq != int64(i+1) {
			t.Fatalf("line %d %q: %v", i, line, err)
		}
	}
}
