// Package bench holds keyturn's benchmarks. Run them with
//
//	go test ./bench -run '^$' -bench . -benchtime 5s
//
// Each reports its throughput as a custom metric (writes/s, reads/s).
package bench

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keyturn/keyturn/internal/testenv"
)

// parallelism is the number of concurrent clients per GOMAXPROCS.
const parallelism = 16

func client() *http.Client {
	return &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 1024, MaxConnsPerHost: 1024}}
}

func recordBody(i int64) []byte {
	b, _ := json.Marshal(map[string]any{
		"type": "pamUser", "title": fmt.Sprintf("user %d", i), "folder": "Bench/Okta",
		"fields": []map[string]any{
			{"type": "login", "value": []string{fmt.Sprintf("user%06d@example.com", i)}},
			{"type": "password", "value": []string{fmt.Sprintf("Pw-%d-x9!QzR7#kLm2", i)}},
			{"type": "url", "value": []string{"https://example.okta.com"}},
		},
		"custom": []map[string]any{{"type": "text", "label": "NOOP", "value": []string{"True"}}},
	})
	return b
}

func do(c *http.Client, method, url, token string, body []byte, want int) error {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != want {
		return fmt.Errorf("%s %s: status %d, want %d", method, url, resp.StatusCode, want)
	}
	return nil
}

// BenchmarkRecordWrites measures durable record creates/s (each one a committed, fsynced
// SQLite transaction) through the HTTP API with concurrent clients.
func BenchmarkRecordWrites(b *testing.B) {
	env := testenv.Start(b)
	c := client()
	url := env.URL("/v1/teams/acme/records")
	var n atomic.Int64
	b.SetParallelism(parallelism)
	b.ResetTimer()
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := do(c, "POST", url, env.Token, recordBody(n.Add(1)), http.StatusCreated); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "writes/s")
}

// BenchmarkRecordReads measures authenticated record reads/s (token check, row read, data key
// unwrap, decryption) through the HTTP API with concurrent clients, over 1,000 records.
func BenchmarkRecordReads(b *testing.B) {
	env := testenv.Start(b)
	c := client()
	const records = 1000
	uids := make([]string, records)
	for i := range uids {
		var rec struct {
			UID string `json:"uid"`
		}
		if st := env.Do(b, "POST", "/v1/teams/acme/records", json.RawMessage(recordBody(int64(i))), &rec); st != http.StatusCreated {
			b.Fatalf("create: %d", st)
		}
		uids[i] = rec.UID
	}
	var n atomic.Int64
	b.SetParallelism(parallelism)
	b.ResetTimer()
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			uid := uids[n.Add(1)%records]
			if err := do(c, "GET", env.URL("/v1/teams/acme/records/"+uid), env.Token, nil, http.StatusOK); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "reads/s")
}
