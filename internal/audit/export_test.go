package audit

import "github.com/keyturn/keyturn/internal/store"

// ChainHash is chainHash for the tests of package audit_test, which write events as a
// keyturn before team chains did.
func (l *Log) ChainHash(e store.AuditEvent) []byte { return l.chainHash(e) }
