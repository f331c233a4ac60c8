package datadir

import (
	"context"
	"fmt"

	"github.com/keyturn/keyturn/internal/store"
)

// CopyToPostgres copies the vault of data directory dir (its SQLite database) into the empty
// PostgreSQL database storage (a postgres:// URL), as store.CopyToPostgres does. It holds the
// directory's exclusive lock while it copies, so it refuses (with an *InUseError) while a
// server runs on dir, and no server starts on it meanwhile. The target is migrated first; the
// copy itself is one transaction. No key is needed: ciphertexts and the wrapped master key are
// copied as they are, and dir's key file (or the passphrase) unseals the copy.
func CopyToPostgres(ctx context.Context, dir, storage string) (store.CopyReport, error) {
	if err := checkVault(dir, ""); err != nil {
		return store.CopyReport{}, err
	}
	if !store.IsPostgres(storage) {
		return store.CopyReport{}, fmt.Errorf("the target must be a postgres:// URL")
	}
	lock, err := LockExclusive(dir)
	if err != nil {
		return store.CopyReport{}, fmt.Errorf("%w: stop the server on it first; nothing was copied", err)
	}
	defer lock.Release()
	src, err := store.OpenSQLite(ctx, store.SQLitePath(dir))
	if err != nil {
		return store.CopyReport{}, err
	}
	defer src.Close()
	if err := src.Migrate(ctx); err != nil {
		return store.CopyReport{}, fmt.Errorf("the source: %w", err)
	}
	dst, err := store.OpenPostgres(ctx, storage)
	if err != nil {
		return store.CopyReport{}, err
	}
	defer dst.Close()
	if err := dst.Migrate(ctx); err != nil {
		return store.CopyReport{}, fmt.Errorf("the target: %w", err)
	}
	return store.CopyToPostgres(ctx, src, dst)
}
