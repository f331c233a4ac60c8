package ui_test

import (
	"os"
	"testing"

	"github.com/keyturn/keyturn/internal/testenv/pgtest"
)

// TestMain stops the PostgreSQL server TestSessionAcrossNodes may have started.
func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }
