// Package sink holds the destinations the audit trail is exported to: a JSONL file, a signed
// webhook and a syslog server. Each takes batches of events in order and says whether it kept
// them; the audit Forwarder sends again what was not acknowledged.
package sink

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"sync"

	"github.com/keyturn/keyturn/internal/audit"
)

// JSONL appends events to a file, one JSON object a line, and syncs the file before it
// acknowledges a batch. After a crash a batch may be written twice: readers drop repeated seqs.
// A file moved away (logrotate) is noticed at the next batch, which goes to a new file at path.
type JSONL struct {
	mu   sync.Mutex
	f    *os.File
	path string
}

// NewJSONL opens (creating, mode 0600) the file at path for appending.
func NewJSONL(path string) (*JSONL, error) {
	f, err := openAppend(path)
	if err != nil {
		return nil, err
	}
	return &JSONL{f: f, path: path}, nil
}

func openAppend(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("audit file: %w", err)
	}
	if st, err := f.Stat(); err == nil && st.Mode().Perm()&0o077 != 0 {
		f.Close()
		return nil, fmt.Errorf("audit file %s can be read by others (mode %v): chmod 600 it", path, st.Mode().Perm())
	}
	return f, nil
}

// reopen opens path again when the open file is no longer the one there.
func (s *JSONL) reopen() error {
	there, err := os.Stat(s.path)
	if open, err2 := s.f.Stat(); err == nil && err2 == nil && os.SameFile(there, open) {
		return nil
	}
	f, err := openAppend(s.path)
	if err != nil {
		return err
	}
	s.f.Close()
	s.f = f
	return nil
}

// Send appends the events and syncs the file.
func (s *JSONL) Send(_ context.Context, events []audit.Exported) error {
	var buf []byte
	for _, e := range events {
		line, err := json.Marshal(e)
		if err != nil {
			return err
		}
		buf = append(append(buf, line...), '\n')
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.reopen(); err != nil {
		return err
	}
	st, err := s.f.Stat()
	if err != nil {
		return fmt.Errorf("audit file %s: %w", s.path, err)
	}
	if _, err := s.f.Write(buf); err != nil {
		// A batch half written (the disk full) is cut off, so that its retry does not start
		// in the middle of a line.
		_ = s.f.Truncate(st.Size())
		return fmt.Errorf("audit file %s: %w", s.path, err)
	}
	if err := s.f.Sync(); err != nil {
		return fmt.Errorf("audit file %s: %w", s.path, err)
	}
	return nil
}

// Close closes the file.
func (s *JSONL) Close() error { return s.f.Close() }
