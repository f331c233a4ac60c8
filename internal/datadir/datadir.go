// Package datadir creates and opens a keyturn data directory: the SQLite database (or, with a
// postgres:// storage URL, a PostgreSQL database), the wrapped master key inside it and, when
// no passphrase is used, the key file master.key.
package datadir

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/keyturn/keyturn/internal/auth"
	"github.com/keyturn/keyturn/internal/keyring"
	"github.com/keyturn/keyturn/internal/secret"
	"github.com/keyturn/keyturn/internal/store"
)

// KeyFileName is the key file created in the data directory when no passphrase is given.
const KeyFileName = "master.key"

// ErrExists is returned by Init when the directory already holds a vault.
var ErrExists = errors.New("already holds a keyturn vault")

// Unseal says how to obtain the key-encryption key: a passphrase file, or else the data
// directory's key file.
type Unseal struct {
	PassphraseFile string
	KDF            keyring.KDFParams // for Init with a passphrase; zero means keyring.DefaultKDF()
}

// Vault is an open, unsealed data directory.
type Vault struct {
	// Storage is the database it was opened on: empty for the SQLite file in the data
	// directory, or a postgres:// URL.
	Storage string
	DB      *store.DB
	Keys    *keyring.Keyring
	// NodeLost receives, once, when OpenExclusiveStorage's PostgreSQL node lock was lost to
	// another process (its session ended and another server with the same node name took
	// it): this process must stop at once. It never receives on SQLite.
	NodeLost <-chan error
	lock     *Lock        // held by OpenExclusive's vault until Close
	node     func() error // releases the PostgreSQL node lock OpenExclusiveStorage took
}

// NodeLockCheck is how often a server checks that it still holds its PostgreSQL node lock.
const NodeLockCheck = time.Second

// Init creates dir (0700), the database, the key hierarchy and the first team, and returns the
// team admin's credentials. It refuses a directory that already holds a vault, and on failure
// removes what it created.
func Init(ctx context.Context, dir, team string, u Unseal) (creds auth.Credentials, err error) {
	return InitStorage(ctx, dir, "", team, u)
}

// InitStorage is Init with the database in storage: empty for the SQLite file in dir, or a
// postgres:// URL, whose database must not hold a vault yet (dir then holds the key file).
func InitStorage(ctx context.Context, dir, storage, team string, u Unseal) (creds auth.Credentials, err error) {
	if dir == "" {
		return creds, errors.New("--data is required")
	}
	if err := auth.ValidateTeamName(team); err != nil {
		return creds, err
	}
	for _, name := range []string{filepath.Base(store.SQLitePath(dir)), KeyFileName} {
		if _, err := os.Stat(filepath.Join(dir, name)); err == nil {
			return creds, fmt.Errorf("%s %w (found %s); nothing was changed", dir, ErrExists, name)
		}
	}
	unlocker, err := initUnlocker(dir, u)
	if err != nil {
		return creds, err
	}
	created, err := mkdirPrivate(dir)
	if err != nil {
		return creds, err
	}
	var made []string // files to remove if Init fails
	defer func() {
		if err != nil {
			for _, f := range made {
				_ = os.Remove(f)
			}
			if created {
				_ = os.Remove(dir)
			}
		}
	}()
	dbPath := store.SQLitePath(dir)
	if storage == "" {
		storage = dbPath
		made = append(made, dbPath, dbPath+"-wal", dbPath+"-shm")
	}
	if u.PassphraseFile == "" {
		keyPath := filepath.Join(dir, KeyFileName)
		content := keyring.NewKeyFileContent()
		if err := writeNew(keyPath, content.Bytes()); err != nil {
			return creds, err
		}
		made = append(made, keyPath)
		unlocker = keyring.KeyFile(content)
	}
	kdf := u.KDF
	if kdf.Algorithm == "" {
		kdf = keyring.DefaultKDF()
	}
	keys, wrapped, err := keyring.New(unlocker, kdf)
	if err != nil {
		return creds, err
	}
	wrappedJSON, err := json.Marshal(wrapped)
	if err != nil {
		return creds, err
	}
	db, err := store.Open(ctx, storage)
	if err != nil {
		return creds, err
	}
	defer func() { err = errors.Join(err, db.Close()) }()
	if err := db.Migrate(ctx); err != nil {
		return creds, err
	}
	if _, err := db.LatestKeyring(ctx); err == nil {
		return creds, fmt.Errorf("the database %w; nothing was changed", ErrExists)
	} else if !errors.Is(err, store.ErrNotFound) {
		return creds, err
	}
	if err := db.Tx(ctx, func(tx *store.Tx) error {
		return tx.SaveKeyring(ctx, wrapped.Term, wrappedJSON, time.Now())
	}); err != nil {
		return creds, err
	}
	return auth.New(db, keys, auth.Options{}).CreateTeam(ctx, team)
}

// Open opens and unseals an existing data directory. A wrong passphrase or key file gives an
// error wrapping keyring.ErrWrongKey, and nothing is written.
func Open(ctx context.Context, dir string, u Unseal) (*Vault, error) {
	return OpenStorage(ctx, dir, "", u)
}

// OpenStorage is Open with the database in storage: empty for the SQLite file in dir, or a
// postgres:// URL.
func OpenStorage(ctx context.Context, dir, storage string, u Unseal) (*Vault, error) {
	if err := checkVault(dir, storage); err != nil {
		return nil, err
	}
	if storage == "" {
		storage = store.SQLitePath(dir)
	}
	db, err := store.Open(ctx, storage)
	if err != nil {
		return nil, err
	}
	keys, err := unseal(ctx, db, dir, u)
	if err == nil {
		err = db.Migrate(ctx)
	}
	if err != nil {
		db.Close()
		return nil, err
	}
	if storage == store.SQLitePath(dir) {
		storage = ""
	}
	return &Vault{Storage: storage, DB: db, Keys: keys}, nil
}

// OpenExclusive is Open for the one process that may run the engine (crash recovery, the
// scheduler, scripts) on dir: it first takes the directory's exclusive lock (see
// LockExclusive), so a second one fails with an *InUseError before it reads or writes
// anything. The lock is held until Close. Commands that only add rows (team add) use Open and
// may run beside it.
func OpenExclusive(ctx context.Context, dir string, u Unseal) (*Vault, error) {
	return OpenExclusiveStorage(ctx, dir, "", "", u)
}

// OpenExclusiveStorage is OpenExclusive with the database in storage: empty for the SQLite
// file in dir, or a postgres:// URL. On PostgreSQL, where many servers (nodes) share the
// database, it also takes the lock of the node's name (store.DB.LockNode), so that a second
// server with the same name refuses to start, on this machine or another.
func OpenExclusiveStorage(ctx context.Context, dir, storage, node string, u Unseal) (*Vault, error) {
	if err := checkVault(dir, storage); err != nil {
		return nil, err
	}
	lock, err := LockExclusive(dir)
	if err != nil {
		return nil, err
	}
	v, err := OpenStorage(ctx, dir, storage, u)
	if err != nil {
		lock.Release()
		return nil, err
	}
	v.lock = lock
	lost := make(chan error, 1)
	v.NodeLost = lost
	if v.node, err = v.DB.LockNode(ctx, node, NodeLockCheck, func(err error) { lost <- err }); err != nil {
		v.Close()
		return nil, fmt.Errorf("%w: stop it first", err)
	}
	return v, nil
}

// Close closes the database, then releases the directory's lock if the vault holds it.
func (v *Vault) Close() error {
	var node error
	if v.node != nil {
		node = v.node()
	}
	return errors.Join(node, v.DB.Close(), v.lock.Release())
}

// checkVault says whether dir holds a vault (with storage, the database is checked when
// it is unsealed).
func checkVault(dir, storage string) error {
	if dir == "" {
		return errors.New("--data is required")
	}
	if storage != "" {
		return nil
	}
	if _, err := os.Stat(store.SQLitePath(dir)); err != nil {
		return fmt.Errorf("%s holds no keyturn vault (run keyturn init --data %s first)", dir, dir)
	}
	return nil
}

func unseal(ctx context.Context, db *store.DB, dir string, u Unseal) (*keyring.Keyring, error) {
	raw, err := db.LatestKeyring(ctx)
	if errors.Is(err, store.ErrNotFound) {
		return nil, errors.New("the database holds no keyturn vault (run keyturn init first)")
	}
	if err != nil {
		return nil, fmt.Errorf("read the wrapped master key: %w", err)
	}
	var wrapped keyring.Wrapped
	if err := json.Unmarshal(raw, &wrapped); err != nil {
		return nil, fmt.Errorf("read the wrapped master key: %w", err)
	}
	var unlocker keyring.Unlocker
	switch {
	case u.PassphraseFile != "":
		p, err := readPassphrase(u.PassphraseFile)
		if err != nil {
			return nil, err
		}
		unlocker = keyring.Passphrase(p)
	case wrapped.Kind == "passphrase":
		return nil, errors.New("this vault is sealed with a passphrase: pass --passphrase-file")
	default:
		path := filepath.Join(dir, KeyFileName)
		if st, err := os.Stat(path); err == nil && st.Mode().Perm()&0o077 != 0 {
			return nil, fmt.Errorf("%s is readable by others (mode %04o): it unseals the vault; run chmod 600 %s",
				path, st.Mode().Perm(), path)
		}
		content, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("read the key file: %w", err)
		}
		if len(content) != keyring.KeySize {
			// A truncated or edited key file is a wrong key file like any other.
			clear(content)
			return nil, fmt.Errorf("cannot unseal the vault: %s holds %d bytes, not %d: %w",
				path, len(content), keyring.KeySize, keyring.ErrWrongKey)
		}
		unlocker = keyring.KeyFile(secret.New(content))
		clear(content)
	}
	keys, err := keyring.Open(wrapped, unlocker)
	if err != nil {
		return nil, fmt.Errorf("cannot unseal the vault: %w", err)
	}
	return keys, nil
}

func initUnlocker(dir string, u Unseal) (keyring.Unlocker, error) {
	if u.PassphraseFile == "" {
		return keyring.Unlocker{}, nil // the key file is made once the directory exists
	}
	p, err := readPassphrase(u.PassphraseFile)
	if err != nil {
		return keyring.Unlocker{}, err
	}
	if len(p.Bytes()) < 8 {
		return keyring.Unlocker{}, errors.New("the passphrase is shorter than 8 characters")
	}
	return keyring.Passphrase(p), nil
}

// readPassphrase reads a passphrase file, dropping one trailing newline.
func readPassphrase(path string) (secret.Secret, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return secret.Secret{}, fmt.Errorf("read the passphrase file: %w", err)
	}
	s := strings.TrimSuffix(strings.TrimSuffix(string(b), "\n"), "\r")
	clear(b)
	if s == "" {
		return secret.Secret{}, fmt.Errorf("the passphrase file %s is empty", path)
	}
	return secret.FromString(s), nil
}

// mkdirPrivate creates dir with mode 0700 and reports whether it did; an existing directory is
// tightened to 0700.
func mkdirPrivate(dir string) (bool, error) {
	err := os.Mkdir(dir, 0o700)
	if err == nil {
		return true, nil
	}
	if !errors.Is(err, fs.ErrExist) {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return false, fmt.Errorf("create %s: %w", dir, err)
		}
		return true, nil
	}
	st, statErr := os.Stat(dir)
	if statErr != nil || !st.IsDir() {
		return false, fmt.Errorf("%s exists and is not a directory", dir)
	}
	return false, os.Chmod(dir, 0o700)
}

func writeNew(path string, content []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("create %s: %w", path, err)
	}
	if _, err := f.Write(content); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	return f.Close()
}
