package main

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/spf13/pflag"

	"github.com/keyturn/keyturn/internal/cli"
	"github.com/keyturn/keyturn/internal/emulator"
	"github.com/keyturn/keyturn/internal/secret"
)

// oauthAppFlags are the flags of "keyturn emulator okta" that register an OAuth app.
type oauthAppFlags struct {
	clientID, publicKey, keyType, kid, privateOut string
	generate, requireDPoP                         bool
	scopes                                        []string
}

func (a *oauthAppFlags) register(f *pflag.FlagSet) {
	f.StringVar(&a.publicKey, "oauth-public-key", "", "register an OAuth app with the public key(s) in this file: a JWK, a JWK Set or PEM")
	f.BoolVar(&a.generate, "oauth-generate-key", false, "register an OAuth app with a new key pair; its private key is printed once (or see --oauth-private-key-out)")
	f.StringVar(&a.keyType, "oauth-key-type", "rsa", "type of the generated key: rsa (2048 bits) or ec (P-256)")
	f.StringVar(&a.privateOut, "oauth-private-key-out", "", "write the generated private key (PEM) to this new file, mode 0600, instead of printing it")
	f.StringVar(&a.clientID, "oauth-client-id", "", "the OAuth app's client_id (default: a random 0oa… id)")
	f.StringVar(&a.kid, "oauth-key-id", "", "the key's kid (default: the JWK's kid, else the key's RFC 7638 thumbprint)")
	f.BoolVar(&a.requireDPoP, "oauth-require-dpop", false, "the OAuth app requires DPoP-bound tokens, as new Okta apps do by default")
	f.StringSliceVar(&a.scopes, "oauth-scopes", []string{emulator.ScopeUsersRead, emulator.ScopeUsersManage}, "scopes granted to the OAuth app")
}

// client returns the OAuth app the flags describe (nil when none is asked for) and, for a
// generated key, its private key.
func (a *oauthAppFlags) client(f *pflag.FlagSet) (*emulator.OAuthClient, secret.Secret, error) {
	if a.publicKey == "" && !a.generate {
		for _, name := range []string{"oauth-client-id", "oauth-key-id", "oauth-require-dpop", "oauth-scopes", "oauth-key-type", "oauth-private-key-out"} {
			if f.Changed(name) {
				return nil, secret.Secret{}, cli.Usagef("--%s needs --oauth-public-key or --oauth-generate-key", name)
			}
		}
		return nil, secret.Secret{}, nil
	}
	if a.publicKey != "" && a.generate {
		return nil, secret.Secret{}, cli.Usagef("--oauth-public-key and --oauth-generate-key exclude each other")
	}
	if !a.generate && (f.Changed("oauth-private-key-out") || f.Changed("oauth-key-type")) {
		return nil, secret.Secret{}, cli.Usagef("--oauth-private-key-out and --oauth-key-type go with --oauth-generate-key")
	}
	var scopes []string
	for _, s := range a.scopes {
		for _, s := range strings.Fields(s) {
			if s != emulator.ScopeUsersRead && s != emulator.ScopeUsersManage {
				return nil, secret.Secret{}, cli.Usagef("--oauth-scopes: unknown scope %q (allowed: %s, %s)", s, emulator.ScopeUsersRead, emulator.ScopeUsersManage)
			}
			scopes = append(scopes, s)
		}
	}
	if len(scopes) == 0 {
		return nil, secret.Secret{}, cli.Usagef("--oauth-scopes: grant at least one scope")
	}
	c := &emulator.OAuthClient{ClientID: a.clientID, Scopes: scopes, RequireDPoP: a.requireDPoP}
	if c.ClientID == "" {
		c.ClientID = emulator.NewClientID()
	}
	var private secret.Secret
	if a.generate {
		if a.keyType != "rsa" && a.keyType != "ec" {
			return nil, secret.Secret{}, cli.Usagef("--oauth-key-type %q: want rsa or ec", a.keyType)
		}
		if a.privateOut != "" {
			if _, err := os.Lstat(a.privateOut); err == nil {
				return nil, secret.Secret{}, cli.Usagef("--oauth-private-key-out %s exists: the key is written to a new file only", a.privateOut)
			}
		}
		key, pub, err := emulator.GenerateOAuthKey(a.keyType, a.kid)
		if err != nil {
			return nil, secret.Secret{}, err
		}
		c.Keys, private = []emulator.OAuthKey{pub}, key
	} else {
		data, err := os.ReadFile(a.publicKey)
		if err != nil {
			return nil, secret.Secret{}, cli.Usagef("--oauth-public-key: %v", err)
		}
		keys, err := emulator.ParseOAuthKeys(data)
		if err != nil {
			return nil, secret.Secret{}, cli.Usagef("--oauth-public-key %s: %v", a.publicKey, err)
		}
		if a.kid != "" {
			if len(keys) != 1 {
				return nil, secret.Secret{}, cli.Usagef("--oauth-key-id names one key, and %s holds %d", a.publicKey, len(keys))
			}
			keys[0].KID = a.kid
		}
		c.Keys = keys
	}
	return c, private, nil
}

// output is the "oauth" object of the emulator's first line; a generated private key is in it
// unless it was written to --oauth-private-key-out.
func (a *oauthAppFlags) output(c emulator.OAuthClient, private secret.Secret, base string) (map[string]any, error) {
	var kids []string
	for _, k := range c.Keys {
		kids = append(kids, k.KID)
	}
	o := map[string]any{
		"client_id":    c.ClientID,
		"key_ids":      kids,
		"token_url":    base + "/oauth2/v1/token",
		"scopes":       c.Scopes,
		"require_dpop": c.RequireDPoP,
	}
	switch {
	case private.IsZero():
	case a.privateOut != "":
		if err := writeNewFile(a.privateOut, private.Bytes()); err != nil {
			return nil, err
		}
		o["private_key_file"] = a.privateOut
	default:
		o["private_key_pem"] = private.Reveal()
	}
	return o, nil
}

// writeNewFile creates path (it must not exist) with mode 0600 and writes data.
func writeNewFile(path string, data []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		if errors.Is(err, os.ErrExist) {
			return cli.Usagef("--oauth-private-key-out %s exists: the key is written to a new file only", path)
		}
		return fmt.Errorf("write the private key: %w", err)
	}
	if _, err := f.Write(data); err != nil {
		_ = f.Close()
		_ = os.Remove(path)
		return fmt.Errorf("write the private key: %w", err)
	}
	if err := f.Close(); err != nil {
		_ = os.Remove(path)
		return fmt.Errorf("write the private key: %w", err)
	}
	return nil
}
