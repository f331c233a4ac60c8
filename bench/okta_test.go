package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keyturn/keyturn/examples"
	"github.com/keyturn/keyturn/internal/emulator"
	"github.com/keyturn/keyturn/internal/rotation"
	"github.com/keyturn/keyturn/internal/sandbox"
	"github.com/keyturn/keyturn/internal/vault"
)

// BenchmarkOktaRotations measures complete Okta rotations/s through the engine against the
// emulator, with the same users and settings but for the method:
//   - native: the okta connector (get user by login, change_password, authn verify);
//   - corrected-script: the corrected Bash script of examples/okta, scripts_only, verify_with okta;
//   - seed-script: the seed's Bash script as published, which Okta refuses (runs end failed;
//     the figure is attempts/s).
//
// The emulator's own ceiling is BenchmarkEmulatorChangePassword.
func BenchmarkOktaRotations(b *testing.B) {
	seed, _ := os.ReadFile("../../shared/seeds/restored/okta-user-rotation.sh")
	for _, tc := range []struct {
		name   string
		method string
		script []byte
		want   string
	}{
		{"native", rotation.MethodGeneral, nil, rotation.StatusSucceeded},
		{"corrected-script", rotation.MethodScriptsOnly, examples.OktaUserRotation, rotation.StatusSucceeded},
		{"seed-script", rotation.MethodScriptsOnly, seed, rotation.StatusFailed},
	} {
		b.Run(tc.name, func(b *testing.B) {
			if tc.script != nil && len(tc.script) == 0 {
				b.Skip("the seed script is not beside the clone")
			}
			benchOkta(b, tc.method, tc.script, tc.want)
		})
	}
}

func benchOkta(b *testing.B, method string, script []byte, want string) {
	// Enough users that none is checked with /api/v1/authn more than Okta's 4 times a second.
	const users, callers = 1024, 64
	// The emulator's rate limits and the engine's per-target one are out of the way: the figure
	// is the gateway's own.
	s, err := sandbox.Start(context.Background(), sandbox.Options{Workers: callers,
		Rotation: rotation.Options{TargetRate: -1}, Emulator: emulator.Options{Users: users, RateLimit: 1 << 30}})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	str := func(v string) []json.RawMessage { js, _ := json.Marshal(v); return []json.RawMessage{js} }
	api, err := s.Services.Vault.Create(ctx, s.Scope(), vault.Record{Type: "login", Title: "Okta API Access Details",
		Fields: []vault.Field{{Type: "url", Value: str(s.OrgURL)}, {Type: "password", Value: str(s.Emulator.Token())}}})
	if err != nil {
		b.Fatal(err)
	}
	uids := make([]string, users)
	for i := range uids {
		rec, err := s.Services.Vault.Create(ctx, s.Scope(), vault.Record{Type: "pamUser", Title: fmt.Sprintf("okta %d", i+1),
			Fields: []vault.Field{{Type: "login", Value: str(emulator.SeedLogin(i + 1))}, {Type: "password", Value: str(emulator.SeedPassword(i + 1))}}})
		if err != nil {
			b.Fatal(err)
		}
		uids[i] = rec.UID
		settings := rotation.Settings{Method: method, ResourceUID: api.UID}
		if method == rotation.MethodGeneral {
			settings.Connector = "okta"
		} else {
			settings.VerifyWith = "okta"
		}
		if _, err := s.Services.Engine.SetSettings(ctx, s.Scope(), rec.UID, settings); err != nil {
			b.Fatal(err)
		}
		if script != nil {
			if _, err := s.Services.Engine.AddScript(ctx, s.Scope(), rec.UID, rotation.ScriptInput{
				Name: "okta.sh", Content: script, CredentialUIDs: []string{api.UID}}); err != nil {
				b.Fatal(err)
			}
		}
	}
	var next atomic.Int64
	b.SetParallelism(callers / 2)
	b.ResetTimer()
	start, before := time.Now(), s.Services.DB.WriterStats()
	b.RunParallel(func(pb *testing.PB) {
		g := int(next.Add(1)-1) % callers
		for k := 0; pb.Next(); k++ {
			uid := uids[(g+k*callers)%users]
			run, _, err := s.Services.Engine.Rotate(ctx, s.Scope(), uid, rotation.TriggerOnDemand)
			if err == nil {
				run, err = s.Services.Engine.Wait(ctx, s.Scope(), run.ID)
			}
			if err != nil || run.Status != want {
				b.Errorf("rotation: %+v %v", run, err)
				return
			}
		}
	})
	elapsed, after := time.Since(start), s.Services.DB.WriterStats()
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "rotations/s")
	reportWriter(b, after.Busy-before.Busy, elapsed, b.N)
	b.ReportMetric(float64(s.Emulator.Stats().Sent429), "429s")
}
