package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/keyturn/keyturn/internal/script"
	"github.com/keyturn/keyturn/internal/secret"
	"github.com/keyturn/keyturn/internal/vault"
)

// BenchmarkRunnerOverhead measures what the Runner adds to a trivial script (#!/bin/sh, exit
// 0) over a bare fork+exec of the same file: the private directory, the file, the pipes, the
// params line, redaction and the clean-up. Each iteration runs both, interleaved; ns/op is the
// Runner's, bare-ns/op the bare exec's and added-ns/op the difference (target: ≤ 2 ms). The
// sub-benchmarks put the private directories on the default temporary directory and on a
// tmpfs (/dev/shm), since creating and removing them is most of the cost on a disk.
func BenchmarkRunnerOverhead(b *testing.B) {
	bases := []struct{ name, dir string }{{"tmpdir", os.TempDir()}}
	if fi, err := os.Stat("/dev/shm"); err == nil && fi.IsDir() {
		bases = append(bases, struct{ name, dir string }{"shm", "/dev/shm"})
	}
	for _, base := range bases {
		b.Run(base.name, func(b *testing.B) {
			dir, err := os.MkdirTemp(base.dir, "keyturn-bench-")
			if err != nil {
				b.Skip(err)
			}
			b.Cleanup(func() { os.RemoveAll(dir) })
			benchOverhead(b, dir)
		})
	}
}

func benchOverhead(b *testing.B, dir string) {
	content := []byte("#!/bin/sh\nexit 0\n")
	bare := filepath.Join(dir, "bare.sh")
	if err := os.WriteFile(bare, content, 0o700); err != nil {
		b.Fatal(err)
	}
	r := script.NewRunner(script.Options{TempDir: dir})
	p := script.Params{
		User: vault.Record{UID: "user-uid", Type: "pamUser", Title: "user", Fields: []vault.Field{
			{Type: "login", Value: []json.RawMessage{json.RawMessage(`"alice"`)}},
		}},
		NewPassword: secret.FromString("new-Password-1!"), OldPassword: secret.FromString("old-Password-1!"),
	}
	s := script.Script{Name: "trivial.sh", Content: content}
	ctx := context.Background()
	var bareT, runT time.Duration
	for b.Loop() {
		t0 := time.Now()
		if err := exec.Command(bare).Run(); err != nil {
			b.Fatal(err)
		}
		t1 := time.Now()
		line, err := p.Line()
		if err != nil {
			b.Fatal(err)
		}
		res, err := r.Run(ctx, s, line, script.NewRedactor(script.SecretsOf(p)...))
		if err != nil || res.ReturnCode != 0 {
			b.Fatal(res, err)
		}
		bareT += t1.Sub(t0)
		runT += time.Since(t1)
	}
	n := float64(b.N)
	b.ReportMetric(float64(runT.Nanoseconds())/n, "ns/op")
	b.ReportMetric(float64(bareT.Nanoseconds())/n, "bare-ns/op")
	b.ReportMetric(float64((runT-bareT).Nanoseconds())/n, "added-ns/op")
}

// BenchmarkRedact redacts 64 KiB of bash `set -x` output (quotes, backslashes, JSON, percent
// signs), the most a stream keeps, with the secrets of a typical run: eight passwords and
// tokens, two of which occur in the text shell-quoted.
func BenchmarkRedact(b *testing.B) {
	secrets := []secret.Secret{
		secret.FromString(`srb'Pv2"q\$x` + "`y!z w"), secret.FromString("old-Password-1!"),
		secret.FromString("00aBcDeFgHiJkLmNoPqRsTuVwXyZ012345678"), secret.FromString(`{"k":"v"}`),
		secret.FromString("p@ss/word+%41"), secret.FromString("another's one"),
		secret.FromString("token-0123456789abcdef"), secret.FromString("ä€😀-unicode"),
	}
	red := script.NewRedactor(secrets...)
	var text []byte
	for i := 0; len(text) < 64<<10; i++ {
		text = fmt.Appendf(text, "+ curl -s -X POST https://example.okta.com/api/v1/users/%d -H 'Authorization: SSWS x' -d '{\"credentials\":{\"password\":{\"value\":\"%%41\\\\n\"}}}'\n", i)
		text = append(text, "+ echo 'don'\\''t' \"$HOME\" \\$x 100% done\n"...)
		if i%50 == 0 {
			text = append(text, "+ pw='srb'\\''Pv2\"q\\$x`y!z w'\n+ printf %q another\\'s\\ one\n"...)
		}
	}
	text = text[:64<<10]
	b.SetBytes(int64(len(text)))
	for b.Loop() {
		if out := red.Redact(string(text)); len(out) == 0 {
			b.Fatal("empty")
		}
	}
}
