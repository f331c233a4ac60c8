package browser

import (
	"bufio"
	"bytes"
	"fmt"
	"html"
	"image/png"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/keyturn/keyturn/internal/testenv/procs"
)

// site is a small static site: a form page under a strict Content-Security-Policy, the
// result page the form leads to (through a 303, setting an HttpOnly session cookie), a page
// that refuses every post with 403, a tall page and a page with an inline script the policy
// refuses.
func site(t *testing.T) *httptest.Server {
	t.Helper()
	const csp = "default-src 'self'; script-src 'self'; frame-ancestors 'none'"
	page := func(w http.ResponseWriter, status int, body string) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Header().Set("Content-Security-Policy", csp)
		w.WriteHeader(status)
		fmt.Fprintf(w, "<!doctype html><html lang=en><head><meta charset=utf-8><meta name=viewport content=\"width=device-width, initial-scale=1\"><title>harness</title></head><body>%s</body></html>", body)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /form", func(w http.ResponseWriter, r *http.Request) {
		page(w, http.StatusOK, `<h1>Sign in</h1>
<form method=post action=/submit>
  <label for=name>Name</label> <input id=name name=name value="prefilled">
  <label for=team>Team</label> <select id=team name=team><option>acme</option><option>beta</option></select>
  <button type=submit>Send</button>
</form>
<form method=post action=/refuse><button id=refused type=submit>Refused</button></form>`)
	})
	mux.HandleFunc("POST /submit", func(w http.ResponseWriter, r *http.Request) {
		http.SetCookie(w, &http.Cookie{Name: "session", Value: "s-" + r.PostFormValue("team"), Path: "/",
			HttpOnly: true, SameSite: http.SameSiteStrictMode})
		http.Redirect(w, r, "/result?name="+r.PostFormValue("name")+"&team="+r.PostFormValue("team"), http.StatusSeeOther)
	})
	mux.HandleFunc("GET /result", func(w http.ResponseWriter, r *http.Request) {
		if _, err := r.Cookie("session"); err != nil {
			page(w, http.StatusUnauthorized, `<p id=greeting>no session</p>`)
			return
		}
		page(w, http.StatusOK, fmt.Sprintf(`<p id=greeting>Hello, %s of %s</p>`,
			html.EscapeString(r.URL.Query().Get("name")), html.EscapeString(r.URL.Query().Get("team"))))
	})
	mux.HandleFunc("POST /refuse", func(w http.ResponseWriter, r *http.Request) {
		page(w, http.StatusForbidden, `<p id=error>Refused</p>`)
	})
	mux.HandleFunc("GET /tall", func(w http.ResponseWriter, r *http.Request) {
		// An inline style attribute would break the policy: the style comes from a file.
		page(w, http.StatusOK, `<link rel=stylesheet href=/tall.css><div id=tall>tall</div><p id=end>end</p>`)
	})
	mux.HandleFunc("GET /tall.css", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/css")
		fmt.Fprint(w, `body { margin: 0 } #tall { height: 1700px; background: #36c }`)
	})
	mux.HandleFunc("GET /inline", func(w http.ResponseWriter, r *http.Request) {
		page(w, http.StatusOK, `<p id=p>inline</p><script>window.inlineRan = true;</script><script src=/app.js></script>`)
	})
	mux.HandleFunc("GET /app.js", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/javascript")
		fmt.Fprint(w, `window.appRan = true; console.log("app loaded");`)
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv
}

// A form is filled (replacing what it held), submitted, and its result read after the
// redirect; the HttpOnly cookie the server set is visible to the test, not to the page; a post
// the server refuses shows its status.
func TestFormSubmitAndResult(t *testing.T) {
	t.Parallel()
	srv := site(t)
	b := New(t)
	if status := b.Navigate(srv.URL + "/form"); status != http.StatusOK {
		t.Fatalf("GET /form: %d", status)
	}
	b.Fill("#name", "Ada Lovelace")
	b.SetValue("#team", "beta")
	b.Click("button[type=submit]")
	// Click does not wait for the page: WaitText looks across the load.
	if got := b.WaitText("#greeting", "Hello"); got != "Hello, Ada Lovelace of beta" {
		t.Fatalf("greeting %q: Fill must replace the field's value", got)
	}
	if b.Status() != http.StatusOK || !strings.HasPrefix(b.URL(), srv.URL+"/result?") {
		t.Fatalf("after the redirect: status %d at %s", b.Status(), b.URL())
	}
	c, ok := b.Cookie("session")
	if !ok || c.Value != "s-beta" || !c.HTTPOnly || c.SameSite != "Strict" || !c.Session || c.Path != "/" {
		t.Fatalf("session cookie %+v (found %v) in %+v", c, ok, b.Cookies())
	}
	if js := Eval[string](b, "document.cookie"); strings.Contains(js, "session") {
		t.Fatalf("the page reads the HttpOnly cookie: %q", js)
	}
	if h := b.HTML(); !strings.Contains(h, `<p id="greeting">Hello, Ada Lovelace of beta</p>`) {
		t.Fatalf("HTML:\n%s", h)
	}

	b.Navigate(srv.URL + "/form")
	if status := b.ClickAndLoad("#refused"); status != http.StatusForbidden {
		t.Fatalf("the refused post: status %d", status)
	}
	if got := b.Text("#error"); got != "Refused" || b.Status() != http.StatusForbidden {
		t.Fatalf("after the refused post: %q, status %d", got, b.Status())
	}
	if b.Has("#greeting") || !b.Has("#error") {
		t.Fatal("Has does not tell the page's elements")
	}
}

// Screenshot writes a valid PNG of the whole page, beyond the 1280×800 window, under
// test-output/screenshots/<test>/ at the repository's root.
func TestScreenshotIsAFullPagePNG(t *testing.T) {
	t.Parallel()
	srv := site(t)
	b := New(t)
	b.Navigate(srv.URL + "/tall")
	path := b.Screenshot("tall page")
	out, err := OutputDir()
	if err != nil {
		t.Fatal(err)
	}
	if os.Getenv(EnvOutput) == "" {
		_, here, _, _ := runtime.Caller(0)
		root := filepath.Join(filepath.Dir(here), "..", "..", "..")
		if want := filepath.Join(root, "test-output"); filepath.Clean(out) != filepath.Clean(want) {
			t.Errorf("OutputDir %s, want %s", out, want)
		}
	}
	if want := filepath.Join(out, "screenshots", "TestScreenshotIsAFullPagePNG", "tall_page.png"); path != want {
		t.Errorf("screenshot at %s, want %s", path, want)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatalf("%s is not a PNG: %v", path, err)
	}
	if v := b.CSPViolations(); len(v) > 0 {
		t.Fatalf("the tall page breaks its policy: %q", v)
	}
	if r := img.Bounds(); r.Dx() != Width || r.Dy() < 1700 {
		t.Fatalf("screenshot %v: want the whole page, %d wide and at least 1700 high", r, Width)
	}
	// The middle is the page's blue block, the last row its white background: the whole page.
	for _, px := range []struct {
		x, y    int
		r, g, b uint32
	}{{Width / 2, 1200, 0x33, 0x66, 0xcc}, {Width / 2, img.Bounds().Dy() - 1, 0xff, 0xff, 0xff}} {
		if r, g, bl, _ := img.At(px.x, px.y).RGBA(); r>>8 != px.r || g>>8 != px.g || bl>>8 != px.b {
			t.Errorf("pixel (%d,%d) is %02x%02x%02x, want %02x%02x%02x", px.x, px.y, r>>8, g>>8, bl>>8, px.r, px.g, px.b)
		}
	}

	// A phone's viewport: the page is laid out, and shot, at its width.
	b.Viewport(390, 844, true)
	if w := Eval[int](b, "window.innerWidth"); w != 390 {
		t.Fatalf("innerWidth %d in a 390 px viewport", w)
	}
	f2, err := os.Open(b.Screenshot("phone"))
	if err != nil {
		t.Fatal(err)
	}
	defer f2.Close()
	if cfg, err := png.DecodeConfig(f2); err != nil || cfg.Width != 390 || cfg.Height < 1700 {
		t.Fatalf("phone screenshot %+v, %v", cfg, err)
	}
}

// The browser's reports of what the Content-Security-Policy refused reach the test, and so do
// the page's console messages.
func TestCSPViolationsAreVisible(t *testing.T) {
	t.Parallel()
	srv := site(t)
	b := New(t)
	b.Navigate(srv.URL + "/inline")
	if !Eval[bool](b, "window.appRan === true") {
		t.Fatal("the page's own script did not run")
	}
	if Eval[bool](b, "window.inlineRan === true") {
		t.Fatal("the inline script ran despite script-src 'self'")
	}
	v := b.CSPViolations()
	if len(v) != 1 || !strings.Contains(v[0], "inline script") || !strings.Contains(v[0], "script-src 'self'") {
		t.Fatalf("CSP violations %q", v)
	}
	if c := b.Console(); !slices.Contains(c, "log: app loaded") {
		t.Fatalf("console %q", c)
	}
}

// When a test ends, its browser is gone: every process that carried its profile, and the
// profile.
func TestNoChromiumOutlivesItsTest(t *testing.T) {
	t.Parallel()
	if _, err := ExecPath(); err != nil {
		New(t) // skips, or fails in CI
	}
	srv := site(t)
	var flag, profile string
	var pids []int
	if !t.Run("browse", func(t *testing.T) {
		b := New(t)
		b.Navigate(srv.URL + "/form")
		flag, profile = b.ProfileFlag(), b.profile
		// The main process, its zygotes, a renderer, utility processes.
		if pids = procs.With(flag); len(pids) < 2 {
			t.Fatalf("found %d chromium processes with %s", len(pids), flag)
		}
	}) {
		return
	}
	if left := procs.With(flag); len(left) > 0 {
		t.Fatalf("of the browser's processes %v, %v outlive the test", pids, left)
	}
	if _, err := os.Stat(profile); !os.IsNotExist(err) {
		t.Fatalf("the profile %s outlives the test: %v", profile, err)
	}
}

// envChild makes TestNoChromiumOutlivesTheTestBinary's child start a browser and wait to be
// killed.
const envChild = "KEYTURN_BROWSER_TEST_CHILD"

// When the test binary dies by SIGKILL (no cleanup runs), no process of its browsers survives
// and their profiles are removed.
func TestNoChromiumOutlivesTheTestBinary(t *testing.T) {
	if os.Getenv(envChild) == "1" {
		b := New(t)
		fmt.Printf("%s\n%s\n", b.ProfileFlag(), rootDir)
		os.Stdout.Sync()
		select {}
	}
	t.Parallel()
	if _, err := ExecPath(); err != nil {
		New(t) // skips, or fails in CI
	}
	child := exec.Command(os.Args[0], "-test.run=^TestNoChromiumOutlivesTheTestBinary$", "-test.count=1", "-test.timeout=2m")
	child.Env = procs.QuickExit(append(os.Environ(), envChild+"=1"))
	stdout, err := child.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	child.Stderr = &stderr
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	kill := func() { once.Do(func() { child.Process.Kill(); child.Wait() }) }
	t.Cleanup(kill)
	lines := bufio.NewScanner(stdout)
	var got []string
	for len(got) < 2 && lines.Scan() {
		got = append(got, lines.Text())
	}
	if len(got) < 2 || !strings.HasPrefix(got[0], "--user-data-dir=") {
		kill()
		t.Fatalf("the child printed %q\n%s", got, stderr.String())
	}
	flag, root := got[0], got[1]
	pids := procs.With(flag)
	if len(pids) < 2 {
		t.Fatalf("the child's browser has %d processes", len(pids))
	}
	if err := child.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	child.Wait()
	// The watcher polls the binary's pid every second; give it ample time.
	deadline := time.Now().Add(30 * time.Second)
	for {
		left := procs.With(flag)
		_, err := os.Stat(root)
		if len(left) == 0 && os.IsNotExist(err) {
			return
		}
		if time.Now().After(deadline) {
			for _, pid := range left {
				syscall.Kill(pid, syscall.SIGKILL)
			}
			os.RemoveAll(root)
			t.Fatalf("30 s after the test binary died: of its browser's processes %v, %v are alive; its profile root %s: %v",
				pids, left, root, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// fakeTB records how New ends a test without a browser.
type fakeTB struct {
	testing.TB
	skipped, failed string
}

func (f *fakeTB) Helper()                           {}
func (f *fakeTB) Name() string                      { return "fake" }
func (f *fakeTB) Failed() bool                      { return f.failed != "" }
func (f *fakeTB) Logf(format string, args ...any)   {}
func (f *fakeTB) Errorf(format string, args ...any) { f.failed = fmt.Sprintf(format, args...) }
func (f *fakeTB) Skipf(format string, args ...any) {
	f.skipped = fmt.Sprintf(format, args...)
	runtime.Goexit()
}
func (f *fakeTB) Fatalf(format string, args ...any) {
	f.failed = fmt.Sprintf(format, args...)
	runtime.Goexit()
}

func newWithout(t *testing.T, ci string) *fakeTB {
	t.Helper()
	t.Setenv(EnvChromium, filepath.Join(t.TempDir(), "no-chromium"))
	t.Setenv("CI", ci)
	f := &fakeTB{}
	done := make(chan struct{})
	go func() {
		defer close(done)
		New(f)
		f.failed = "New returned a browser"
	}()
	<-done
	return f
}

// Without Chromium, a browser test is skipped on a developer's machine and fails in CI, and
// the message says how to get one.
func TestWithoutChromiumSkipsOrFailsInCI(t *testing.T) {
	f := newWithout(t, "")
	if f.skipped == "" || f.failed != "" || !strings.Contains(f.skipped, EnvChromium) {
		t.Errorf("outside CI: skipped %q, failed %q", f.skipped, f.failed)
	}
	f = newWithout(t, "true")
	if f.failed == "" || f.skipped != "" || !strings.Contains(f.failed, "no-chromium") {
		t.Errorf("in CI: skipped %q, failed %q", f.skipped, f.failed)
	}
}

// KEYTURN_TEST_OUTPUT moves the test output; screenshot folders are named after the test.
func TestOutputDir(t *testing.T) {
	dir := t.TempDir()
	t.Setenv(EnvOutput, dir)
	if got, err := OutputDir(); err != nil || got != dir {
		t.Fatalf("OutputDir %q, %v; want %q", got, err, dir)
	}
	if got := screenshotDir(t); got != filepath.Join(dir, "screenshots", "TestOutputDir") {
		t.Fatalf("screenshotDir %s", got)
	}
	if got := safeName("TestX/sub case: ä"); got != "TestX_sub_case___" {
		t.Fatalf("safeName %q", got)
	}
}

// BenchmarkStart measures what a browser test pays before its first page: starting Chromium
// with a fresh profile, loading one page, and stopping it all (the kill and the profile's
// removal included).
func BenchmarkStart(b *testing.B) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, "<!doctype html><title>x</title><p id=p>ready</p>")
	}))
	defer srv.Close()
	for b.Loop() {
		br, stop := start(b)
		br.launch(b)
		br.Navigate(srv.URL)
		br.WaitText("#p", "ready")
		stop()
	}
}

// A failed test leaves a screenshot of the page it failed on.
func TestFailedTestLeavesAScreenshot(t *testing.T) {
	if _, err := ExecPath(); err != nil {
		New(t) // skips, or fails in CI
	}
	srv := site(t)
	out := t.TempDir()
	t.Setenv(EnvOutput, out)
	f := &fakeTB{}
	b, stop := start(f)
	b.launch(f)
	b.Navigate(srv.URL + "/tall")
	f.failed = "the test failed"
	stop()
	img, err := os.Open(filepath.Join(out, "screenshots", "fake", "failed.png"))
	if err != nil {
		t.Fatal(err)
	}
	defer img.Close()
	if cfg, err := png.DecodeConfig(img); err != nil || cfg.Width != Width || cfg.Height < 1700 {
		t.Fatalf("failed.png %+v, %v", cfg, err)
	}
	if f.failed != "the test failed" {
		t.Fatalf("stopping the browser: %s", f.failed)
	}
}
