package bench

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keyturn/keyturn/internal/emulator"
)

// BenchmarkEmulatorChangePassword measures the emulator's own change_password ceiling: concurrent
// clients over loopback HTTP/1.1 keep-alive connections, each rotating its own user's
// password (old → new, a fresh valid password every time), rate limits out of the way.
// The figure is "changes/s"; a gateway benchmark against the emulator cannot exceed it.
//
// The verified/ sub-benchmarks make the calls of a verified native rotation and nothing else:
// change_password, then /api/v1/authn with the new password. Their "changes/s" is what a
// gateway that cost nothing itself could reach, on the same CPUs as the emulator.
func BenchmarkEmulatorChangePassword(b *testing.B) {
	for _, verified := range []bool{false, true} {
		for _, par := range []int{1, 8, 32} {
			clients := runtime.GOMAXPROCS(0) * par // RunParallel's goroutines, one user each
			name := fmt.Sprintf("clients=%d", clients)
			if verified {
				name = "verified/" + name
			}
			b.Run(name, func(b *testing.B) { benchEmulatorChanges(b, clients, par, verified) })
		}
	}
}

func benchEmulatorChanges(b *testing.B, clients, par int, verified bool) {
	em := emulator.New(emulator.Options{Users: clients, RateLimit: 1 << 30, AuthnPerUserPerSecond: -1})
	srv := httptest.NewServer(em)
	defer srv.Close()
	tr := &http.Transport{MaxIdleConns: clients, MaxIdleConnsPerHost: clients, MaxConnsPerHost: clients}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr}
	auth := "SSWS " + em.Token()
	ids := make([]string, clients)
	for i := range ids {
		ids[i], _ = em.UserID(emulator.SeedLogin(i + 1))
	}
	var next atomic.Int64
	var failed atomic.Int64
	b.SetParallelism(par)
	b.ResetTimer()
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		n := int(next.Add(1)-1) % clients
		url := srv.URL + "/api/v1/users/" + ids[n] + "/credentials/change_password"
		old := emulator.SeedPassword(n + 1)
		k := 0
		for pb.Next() {
			k++
			pw := fmt.Sprintf("Bench-%d-%dz", n, k)
			body := `{"oldPassword":{"value":"` + old + `"},"newPassword":{"value":"` + pw + `"}}`
			if !post(client, url, auth, body) {
				failed.Add(1)
				continue
			}
			old = pw
			if verified && !post(client, srv.URL+"/api/v1/authn", "", `{"username":"`+emulator.SeedLogin(n+1)+`","password":"`+pw+`"}`) {
				failed.Add(1)
			}
		}
	})
	elapsed := time.Since(start)
	b.StopTimer()
	if f := failed.Load(); f > 0 {
		b.Fatalf("%d of %d changes failed", f, b.N)
	}
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "changes/s")
	if got := em.Stats().PasswordChanges; got != int64(b.N) {
		b.Fatalf("PasswordChanges %d, want %d", got, b.N)
	}
}

// post sends a JSON body and reports whether the answer was 200.
func post(client *http.Client, url, auth, body string) bool {
	req, _ := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	req.Header.Set("Content-Type", "application/json")
	res, err := client.Do(req)
	if err != nil {
		return false
	}
	_, _ = io.Copy(io.Discard, res.Body)
	res.Body.Close()
	return res.StatusCode == http.StatusOK
}
