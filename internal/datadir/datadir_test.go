package datadir_test

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/keyturn/keyturn/internal/auth"
	"github.com/keyturn/keyturn/internal/datadir"
	"github.com/keyturn/keyturn/internal/keyring"
	"github.com/keyturn/keyturn/internal/store"
)

// fastKDF is Argon2id with test-sized costs; the code path is the production one.
func fastKDF() keyring.KDFParams {
	salt := make([]byte, 16)
	if _, err := rand.Read(salt); err != nil {
		panic(err)
	}
	return keyring.KDFParams{Algorithm: "argon2id", Time: 1, MemoryKiB: 1024, Threads: 1, Salt: salt}
}

func writeFile(t *testing.T, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "pass")
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func mode(t *testing.T, path string) fs.FileMode {
	t.Helper()
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return st.Mode().Perm()
}

type fileState struct {
	mode  fs.FileMode
	size  int64
	sum   [32]byte
	mtime time.Time
}

// snapshot records every entry of dir (and dir itself under ".").
func snapshot(t *testing.T, dir string) map[string]fileState {
	t.Helper()
	out := map[string]fileState{}
	st, err := os.Stat(dir)
	if err != nil {
		t.Fatal(err)
	}
	out["."] = fileState{mode: st.Mode(), mtime: st.ModTime()}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		path := filepath.Join(dir, e.Name())
		st, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		out[e.Name()] = fileState{mode: st.Mode(), size: st.Size(), sum: sha256.Sum256(b), mtime: st.ModTime()}
	}
	return out
}

func sameSnapshot(t *testing.T, what string, before, after map[string]fileState) {
	t.Helper()
	if !reflect.DeepEqual(before, after) {
		for name, b := range before {
			if a, ok := after[name]; !ok {
				t.Errorf("%s: %s disappeared", what, name)
			} else if a != b {
				t.Errorf("%s: %s changed: %+v -> %+v", what, name, b, a)
			}
		}
		for name := range after {
			if _, ok := before[name]; !ok {
				t.Errorf("%s: %s appeared", what, name)
			}
		}
	}
}

// checkCredentials opens the vault and exchanges the credentials for a token.
func checkCredentials(t *testing.T, dir string, u datadir.Unseal, creds auth.Credentials) {
	t.Helper()
	ctx := context.Background()
	v, err := datadir.Open(ctx, dir, u)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	defer v.Close()
	tok, err := auth.New(v.DB, v.Keys, auth.Options{}).IssueToken(ctx, creds.TeamName, creds.KeyID, creds.KeySecret, "test")
	if err != nil {
		t.Fatalf("the credentials Init returned do not work: %v", err)
	}
	if tok.TeamName != creds.TeamName || tok.Bearer.IsZero() {
		t.Fatalf("token %+v", tok)
	}
}

func TestInitKeyFile(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "data")
	creds, err := datadir.Init(ctx, dir, "acme", datadir.Unseal{})
	if err != nil {
		t.Fatal(err)
	}
	if creds.TeamName != "acme" || creds.ServiceUser != auth.AdminUserName || creds.KeyID == "" || creds.KeySecret.IsZero() {
		t.Fatalf("credentials %+v (secret empty: %v)", creds, creds.KeySecret.IsZero())
	}
	if m := mode(t, dir); m != 0o700 {
		t.Errorf("data dir mode %o, want 700", m)
	}
	for _, name := range []string{"keyturn.db", datadir.KeyFileName} {
		if m := mode(t, filepath.Join(dir, name)); m != 0o600 {
			t.Errorf("%s mode %o, want 600", name, m)
		}
	}
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if m := mode(t, filepath.Join(dir, e.Name())); m&0o077 != 0 {
			t.Errorf("%s mode %o: readable by others", e.Name(), m)
		}
	}
	key, err := os.ReadFile(filepath.Join(dir, datadir.KeyFileName))
	if err != nil || len(key) != keyring.KeySize {
		t.Fatalf("key file: %d bytes, %v", len(key), err)
	}
	checkCredentials(t, dir, datadir.Unseal{}, creds)
}

func TestInitTwiceChangesNothing(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "data")
	creds, err := datadir.Init(ctx, dir, "acme", datadir.Unseal{})
	if err != nil {
		t.Fatal(err)
	}
	before := snapshot(t, dir)
	time.Sleep(10 * time.Millisecond) // so that a rewrite would show in the mtimes

	for _, c := range []struct {
		name string
		team string
		u    datadir.Unseal
	}{
		{"same team", "acme", datadir.Unseal{}},
		{"other team", "other", datadir.Unseal{}},
		{"with a passphrase", "acme", datadir.Unseal{PassphraseFile: writeFile(t, "a long passphrase"), KDF: fastKDF()}},
	} {
		_, err := datadir.Init(ctx, dir, c.team, c.u)
		if !errors.Is(err, datadir.ErrExists) {
			t.Fatalf("%s: second Init = %v, want ErrExists", c.name, err)
		}
		sameSnapshot(t, c.name, before, snapshot(t, dir))
	}
	checkCredentials(t, dir, datadir.Unseal{}, creds)

	// A directory holding only one of the two files is refused too.
	if err := os.Remove(filepath.Join(dir, "keyturn.db")); err != nil {
		t.Fatal(err)
	}
	before = snapshot(t, dir)
	if _, err := datadir.Init(ctx, dir, "acme", datadir.Unseal{}); !errors.Is(err, datadir.ErrExists) {
		t.Fatalf("Init over a leftover key file = %v, want ErrExists", err)
	}
	sameSnapshot(t, "leftover key file", before, snapshot(t, dir))
}

func TestInitFailureCreatesNothing(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	cases := []struct {
		name string
		team string
		u    func(t *testing.T) datadir.Unseal
		msg  string
	}{
		{"bad team name", "bad name!", func(*testing.T) datadir.Unseal { return datadir.Unseal{} }, "team name"},
		{"empty team name", "", func(*testing.T) datadir.Unseal { return datadir.Unseal{} }, "team name"},
		{"short passphrase", "acme", func(t *testing.T) datadir.Unseal {
			return datadir.Unseal{PassphraseFile: writeFile(t, "1234567\n"), KDF: fastKDF()}
		}, "8"},
		{"empty passphrase", "acme", func(t *testing.T) datadir.Unseal {
			return datadir.Unseal{PassphraseFile: writeFile(t, "\n"), KDF: fastKDF()}
		}, "empty"},
		{"missing passphrase file", "acme", func(t *testing.T) datadir.Unseal {
			return datadir.Unseal{PassphraseFile: filepath.Join(t.TempDir(), "nope")}
		}, "passphrase file"},
	}
	for _, c := range cases {
		t.Run(c.name+"/new dir", func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "data")
			_, err := datadir.Init(ctx, dir, c.team, c.u(t))
			if err == nil || !strings.Contains(err.Error(), c.msg) {
				t.Fatalf("Init = %v, want an error about %q", err, c.msg)
			}
			if _, err := os.Stat(dir); !errors.Is(err, fs.ErrNotExist) {
				t.Fatalf("the data dir exists after a failed Init (stat: %v)", err)
			}
		})
		t.Run(c.name+"/existing dir", func(t *testing.T) {
			dir := t.TempDir()
			before := snapshot(t, dir)
			if _, err := datadir.Init(ctx, dir, c.team, c.u(t)); err == nil {
				t.Fatal("Init succeeded")
			}
			sameSnapshot(t, "failed Init", before, snapshot(t, dir))
		})
	}
	if _, err := datadir.Init(ctx, "", "acme", datadir.Unseal{}); err == nil || !strings.Contains(err.Error(), "--data") {
		t.Fatalf("Init without a dir = %v", err)
	}
}

// A failure after Init has started writing removes what it wrote.
func TestInitCleansUpAfterLateFailure(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	cancel() // the database cannot be opened: Init fails after making the dir and the key file

	dir := filepath.Join(t.TempDir(), "data")
	if _, err := datadir.Init(ctx, dir, "acme", datadir.Unseal{}); err == nil {
		t.Fatal("Init with a canceled ctx succeeded")
	}
	if _, err := os.Stat(dir); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("the data dir exists after a failed Init (stat: %v)", err)
	}

	existing := t.TempDir()
	if _, err := datadir.Init(ctx, existing, "acme", datadir.Unseal{}); err == nil {
		t.Fatal("Init with a canceled ctx succeeded")
	}
	if entries, _ := os.ReadDir(existing); len(entries) != 0 {
		t.Fatalf("a failed Init left %v", entries)
	}
	// Init still works there afterwards.
	if _, err := datadir.Init(context.Background(), existing, "acme", datadir.Unseal{}); err != nil {
		t.Fatalf("Init after a failed one: %v", err)
	}

	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := datadir.Init(context.Background(), file, "acme", datadir.Unseal{}); err == nil {
		t.Fatal("Init into a regular file succeeded")
	}
	if b, err := os.ReadFile(file); err != nil || string(b) != "x" || mode(t, file) != 0o644 {
		t.Fatalf("Init touched the file in its way: %q %v", b, err)
	}
}

func TestInitExistingEmptyDir(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "data")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	creds, err := datadir.Init(context.Background(), dir, "acme", datadir.Unseal{})
	if err != nil {
		t.Fatalf("Init into an existing empty dir: %v", err)
	}
	if m := mode(t, dir); m != 0o700 {
		t.Errorf("existing dir mode %o after Init, want 700", m)
	}
	checkCredentials(t, dir, datadir.Unseal{}, creds)
}

func TestPassphrase(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "data")
	pass := writeFile(t, "correct horse battery staple\n")
	creds, err := datadir.Init(ctx, dir, "acme", datadir.Unseal{PassphraseFile: pass, KDF: fastKDF()})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, datadir.KeyFileName)); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("a passphrase vault has a key file (stat: %v)", err)
	}
	if m := mode(t, filepath.Join(dir, "keyturn.db")); m != 0o600 {
		t.Errorf("keyturn.db mode %o, want 600", m)
	}

	t.Run("right passphrase", func(t *testing.T) {
		checkCredentials(t, dir, datadir.Unseal{PassphraseFile: pass}, creds)
	})
	t.Run("trailing newline is not part of it", func(t *testing.T) {
		for _, content := range []string{"correct horse battery staple", "correct horse battery staple\r\n"} {
			checkCredentials(t, dir, datadir.Unseal{PassphraseFile: writeFile(t, content)}, creds)
		}
	})

	t.Run("wrong passphrase", func(t *testing.T) {
		db := filepath.Join(dir, "keyturn.db")
		before, err := os.ReadFile(db)
		if err != nil {
			t.Fatal(err)
		}
		for _, wrong := range []string{"correct horse battery stapl", "correct horse battery staple\n\n", " correct horse battery staple"} {
			v, err := datadir.Open(ctx, dir, datadir.Unseal{PassphraseFile: writeFile(t, wrong)})
			if err == nil {
				v.Close()
				t.Fatalf("Open with passphrase %q succeeded", wrong)
			}
			if !errors.Is(err, keyring.ErrWrongKey) || !strings.Contains(err.Error(), "wrong passphrase") {
				t.Fatalf("Open with a wrong passphrase = %v, want ErrWrongKey saying wrong passphrase", err)
			}
		}
		after, err := os.ReadFile(db)
		if err != nil {
			t.Fatal(err)
		}
		if sha256.Sum256(before) != sha256.Sum256(after) {
			t.Fatal("Open with a wrong passphrase changed the database file")
		}
		checkCredentials(t, dir, datadir.Unseal{PassphraseFile: pass}, creds)
	})

	t.Run("no passphrase file", func(t *testing.T) {
		_, err := datadir.Open(ctx, dir, datadir.Unseal{})
		if err == nil || !strings.Contains(err.Error(), "--passphrase-file") {
			t.Fatalf("Open of a passphrase vault without one = %v, want it to ask for --passphrase-file", err)
		}
	})
	t.Run("missing passphrase file", func(t *testing.T) {
		_, err := datadir.Open(ctx, dir, datadir.Unseal{PassphraseFile: filepath.Join(t.TempDir(), "nope")})
		if err == nil || !strings.Contains(err.Error(), "passphrase file") {
			t.Fatalf("Open with a missing passphrase file = %v", err)
		}
	})
}

func TestOpenKeyFileVault(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "data")
	creds, err := datadir.Init(ctx, dir, "acme", datadir.Unseal{})
	if err != nil {
		t.Fatal(err)
	}
	keyPath := filepath.Join(dir, datadir.KeyFileName)
	good, err := os.ReadFile(keyPath)
	if err != nil {
		t.Fatal(err)
	}
	restore := func() {
		t.Helper()
		if err := os.WriteFile(keyPath, good, 0o600); err != nil {
			t.Fatal(err)
		}
	}

	t.Run("passphrase given", func(t *testing.T) {
		v, err := datadir.Open(ctx, dir, datadir.Unseal{PassphraseFile: writeFile(t, "a long passphrase")})
		if err == nil {
			v.Close()
			t.Fatal("Open of a key-file vault with a passphrase succeeded")
		}
	})

	for _, c := range []struct {
		name    string
		corrupt func([]byte) []byte
	}{
		{"flipped bit", func(b []byte) []byte { b = append([]byte(nil), b...); b[7] ^= 1; return b }},
		{"other key", func([]byte) []byte { return keyring.NewKeyFileContent().Bytes() }},
		{"truncated", func(b []byte) []byte { return append([]byte(nil), b[:keyring.KeySize-1]...) }},
		{"trailing newline", func(b []byte) []byte { return append(append([]byte(nil), b...), '\n') }},
		{"empty", func([]byte) []byte { return nil }},
	} {
		t.Run("corrupted key file: "+c.name, func(t *testing.T) {
			defer restore()
			if err := os.WriteFile(keyPath, c.corrupt(good), 0o600); err != nil {
				t.Fatal(err)
			}
			db := filepath.Join(dir, "keyturn.db")
			before, _ := os.ReadFile(db)
			v, err := datadir.Open(ctx, dir, datadir.Unseal{})
			if err == nil {
				v.Close()
				t.Fatal("Open with a corrupted key file succeeded")
			}
			if !errors.Is(err, keyring.ErrWrongKey) {
				t.Fatalf("Open with a corrupted key file = %v, want ErrWrongKey", err)
			}
			if after, _ := os.ReadFile(db); sha256.Sum256(before) != sha256.Sum256(after) {
				t.Fatal("Open with a wrong key file changed the database file")
			}
		})
	}

	t.Run("key file missing", func(t *testing.T) {
		defer restore()
		if err := os.Remove(keyPath); err != nil {
			t.Fatal(err)
		}
		if _, err := datadir.Open(ctx, dir, datadir.Unseal{}); err == nil || !strings.Contains(err.Error(), "key file") {
			t.Fatalf("Open without the key file = %v", err)
		}
	})

	checkCredentials(t, dir, datadir.Unseal{}, creds)
}

func TestOpenWithoutVault(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	for _, dir := range []string{t.TempDir(), filepath.Join(t.TempDir(), "missing")} {
		before, statErr := os.ReadDir(dir)
		_, err := datadir.Open(ctx, dir, datadir.Unseal{})
		if err == nil || !strings.Contains(err.Error(), "keyturn init") {
			t.Fatalf("Open(%s) = %v, want it to say to run keyturn init", dir, err)
		}
		after, _ := os.ReadDir(dir)
		if len(before) != len(after) {
			t.Fatalf("Open of %s without a vault created files: %v", dir, after)
		}
		if statErr != nil {
			if _, err := os.Stat(dir); !errors.Is(err, fs.ErrNotExist) {
				t.Fatalf("Open created %s", dir)
			}
		}
	}
	if _, err := datadir.Open(ctx, "", datadir.Unseal{}); err == nil || !strings.Contains(err.Error(), "--data") {
		t.Fatalf("Open without a dir = %v", err)
	}
}

// An opened vault's database is migrated and usable for writes.
func TestOpenUsable(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "data")
	if _, err := datadir.Init(ctx, dir, "acme", datadir.Unseal{}); err != nil {
		t.Fatal(err)
	}
	v, err := datadir.Open(ctx, dir, datadir.Unseal{})
	if err != nil {
		t.Fatal(err)
	}
	team, err := v.DB.TeamByName(ctx, "acme")
	if err != nil {
		t.Fatal(err)
	}
	if err := v.DB.Tx(ctx, func(tx *store.Tx) error {
		_, err := tx.CreateTeam(ctx, "second", time.Now())
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if err := v.Close(); err != nil {
		t.Fatal(err)
	}
	if team.ID == 0 {
		t.Fatal("team id 0")
	}
}

func TestKeyFileReadableByOthersIsRefused(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "data")
	if _, err := datadir.Init(ctx, dir, "acme", datadir.Unseal{}); err != nil {
		t.Fatal(err)
	}
	key := filepath.Join(dir, datadir.KeyFileName)
	if err := os.Chmod(key, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := datadir.Open(ctx, dir, datadir.Unseal{}); err == nil || !strings.Contains(err.Error(), "chmod 600") {
		t.Fatalf("a world-readable key file: %v", err)
	}
	if err := os.Chmod(key, 0o600); err != nil {
		t.Fatal(err)
	}
	v, err := datadir.Open(ctx, dir, datadir.Unseal{})
	if err != nil {
		t.Fatal(err)
	}
	v.Close()
}

func TestLockExclusive(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	lock, err := datadir.LockExclusive(dir)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, datadir.LockFileName)
	if m := mode(t, path); m.Perm() != 0o600 {
		t.Fatalf("lock file mode %04o", m.Perm())
	}
	// flock locks belong to an open file, so a second lock in this process conflicts too.
	_, err = datadir.LockExclusive(dir)
	var inUse *datadir.InUseError
	if !errors.As(err, &inUse) || inUse.PID != os.Getpid() {
		t.Fatalf("second lock: %v", err)
	}
	if want := fmt.Sprintf("data directory in use by pid %d", os.Getpid()); err.Error() != want {
		t.Fatalf("message %q, want %q", err, want)
	}
	if err := lock.Release(); err != nil {
		t.Fatal(err)
	}
	again, err := datadir.LockExclusive(dir)
	if err != nil {
		t.Fatalf("lock after release: %v", err)
	}
	again.Release()
}

func TestOpenExclusive(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "data")
	ctx := context.Background()
	if _, err := datadir.OpenExclusive(ctx, dir, datadir.Unseal{}); err == nil || !strings.Contains(err.Error(), "holds no keyturn vault") {
		t.Fatalf("no vault: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, datadir.LockFileName)); err == nil {
		t.Fatal("a lock file was made in a directory without a vault")
	}
	if _, err := datadir.Init(ctx, dir, "acme", datadir.Unseal{}); err != nil {
		t.Fatal(err)
	}
	v, err := datadir.OpenExclusive(ctx, dir, datadir.Unseal{})
	if err != nil {
		t.Fatal(err)
	}
	var inUse *datadir.InUseError
	if _, err := datadir.OpenExclusive(ctx, dir, datadir.Unseal{}); !errors.As(err, &inUse) {
		t.Fatalf("second OpenExclusive: %v", err)
	}
	// Commands that only add rows still open it.
	shared, err := datadir.Open(ctx, dir, datadir.Unseal{})
	if err != nil {
		t.Fatalf("Open beside OpenExclusive: %v", err)
	}
	shared.Close()
	if err := v.Close(); err != nil {
		t.Fatal(err)
	}
	v, err = datadir.OpenExclusive(ctx, dir, datadir.Unseal{})
	if err != nil {
		t.Fatalf("after Close: %v", err)
	}
	v.Close()
}
