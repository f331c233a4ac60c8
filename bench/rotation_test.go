package bench

import (
	"context"
	"encoding/base64"
	"fmt"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keyturn/keyturn/internal/rotation"
	"github.com/keyturn/keyturn/internal/testenv"
	"github.com/keyturn/keyturn/internal/vault"
)

// BenchmarkScriptsOnlyRotations measures complete scripts_only rotations per second with a
// trivial script (`#!/bin/sh` + `exit 0`), through the engine with its default 16 workers:
// each rotation saves a pending version, runs the script, and commits, over 64 records.
func BenchmarkScriptsOnlyRotations(b *testing.B) {
	env := testenv.Start(b)
	const records = 64
	uids := make([]string, records)
	for i := range uids {
		var rec struct {
			UID string `json:"uid"`
		}
		body := map[string]any{"type": "pamUser", "title": fmt.Sprintf("bench %d", i),
			"fields": []map[string]any{{"type": "login", "value": []string{fmt.Sprintf("u%d", i)}}}}
		if st := env.Do(b, "POST", "/v1/teams/acme/records", body, &rec); st != http.StatusCreated {
			b.Fatalf("create: %d", st)
		}
		uids[i] = rec.UID
		if st := env.Do(b, "PUT", "/v1/teams/acme/records/"+rec.UID+"/rotation", map[string]any{"method": "scripts_only"}, nil); st != 200 {
			b.Fatalf("settings: %d", st)
		}
		if st := env.Do(b, "POST", "/v1/teams/acme/records/"+rec.UID+"/scripts", map[string]any{
			"name": "noop.sh", "content_base64": base64.StdEncoding.EncodeToString([]byte("#!/bin/sh\nexit 0\n")),
		}, nil); st != http.StatusCreated {
			b.Fatalf("script: %d", st)
		}
	}
	engine := env.Services.Engine
	scope := vault.Scope{TeamID: 1}
	var n atomic.Int64
	b.SetParallelism(records / 2) // 64 concurrent callers on 2 CPUs, one record each at a time
	b.ResetTimer()
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		uid := uids[n.Add(1)%records]
		for pb.Next() {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			run, _, err := engine.Rotate(ctx, scope, uid, rotation.TriggerOnDemand)
			if err == nil {
				run, err = engine.Wait(ctx, scope, run.ID)
			}
			cancel()
			if err != nil || run.Status != rotation.StatusSucceeded {
				b.Errorf("rotation: %+v %v", run, err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "rotations/s")
}
