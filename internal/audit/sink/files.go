package sink

import (
	"crypto/x509"
	"fmt"
	"os"
	"strings"

	"github.com/keyturn/keyturn/internal/secret"
)

// ReadKeyFile reads a webhook's signing key from a file only its owner may read, dropping one
// trailing newline.
func ReadKeyFile(path string) (secret.Secret, error) {
	st, err := os.Stat(path)
	if err != nil {
		return secret.Secret{}, fmt.Errorf("the signing key file: %w", err)
	}
	if st.Mode().Perm()&0o077 != 0 {
		return secret.Secret{}, fmt.Errorf("the signing key file %s is readable by others (mode %04o): run chmod 600 %s", path, st.Mode().Perm(), path)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return secret.Secret{}, fmt.Errorf("the signing key file: %w", err)
	}
	s := strings.TrimSuffix(strings.TrimSuffix(string(b), "\n"), "\r")
	clear(b)
	if s == "" {
		return secret.Secret{}, fmt.Errorf("the signing key file %s is empty", path)
	}
	return secret.FromString(s), nil
}

// ReadCAFile returns the PEM certificates in path, to trust instead of the system's.
func ReadCAFile(path string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("the CA file: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("the CA file %s holds no PEM certificate", path)
	}
	return pool, nil
}
