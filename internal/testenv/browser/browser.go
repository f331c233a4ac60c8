// Package browser drives a real headless Chromium from Go tests, over the Chrome DevTools
// Protocol (chromedp): one browser per test, with a fresh profile, so that cookies and storage
// never leak from one test into another.
//
//	b := browser.New(t)
//	b.Navigate(srv.URL + "/ui/signin")
//	b.Fill("#key_id", keyID)
//	b.Fill("#key_secret", secret)
//	if status := b.ClickAndLoad("button[type=submit]"); status != http.StatusOK {
//		t.Fatalf("sign-in answered %d", status)
//	}
//	b.WaitText("h1", "Records")
//	b.Screenshot("records")
//
// The browser is Chromium from KEYTURN_TEST_CHROMIUM, or else chromium or chromium-browser on
// PATH or in /usr/bin (Debian's chromium package, which .ci/run installs). Without one, New
// skips the test, except in CI (CI=true), where it fails it.
//
// Every method fails the test (t.Fatalf) when the browser does not do what it is asked within
// the browser's timeout (Timeout, 15 s by default), so call them from the test's goroutine.
// A test that fails saves a screenshot of the page, "failed.png", beside its others.
//
// The browser and every process it started are killed, and its profile removed, when the test
// ends. If the test binary dies first (a panic, a timeout, SIGKILL), the kernel kills the main
// browser process (chromedp sets its parent-death signal), and a watcher process started with
// the first browser kills whatever else holds the binary's profile directory and removes it.
package browser

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	cdplog "github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"

	"github.com/keyturn/keyturn/internal/testenv/procs"
)

// EnvChromium names the Chromium binary to use instead of the one found on the machine.
const EnvChromium = "KEYTURN_TEST_CHROMIUM"

// EnvOutput names the folder that tests write their output to (screenshots/ below it). Without
// it, the output goes to test-output/ at the root of the repository, which git ignores.
const EnvOutput = "KEYTURN_TEST_OUTPUT"

// Flags are the command-line flags every browser starts with, beside a temporary profile
// (--user-data-dir), the DevTools pipe and the window size.
var Flags = []string{"--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
	"--disable-background-networking", "--disable-dev-shm-usage", "--no-default-browser-check",
	"--disable-extensions", "--disable-sync", "--disable-breakpad", "--disable-component-update",
	"--password-store=basic", "--use-mock-keychain", "--force-color-profile=srgb", "--hide-scrollbars",
	"--mute-audio"}

// DefaultTimeout bounds each method's work in the browser, unless Timeout changes it.
const DefaultTimeout = 15 * time.Second

// Width and Height are the window's size: the "readable at 1280×800".
const (
	Width  = 1280
	Height = 800
)

// Browser is one headless Chromium with one tab, for one test.
type Browser struct {
	t       testing.TB
	bin     string          // the Chromium binary
	ctx     context.Context // the tab's; no deadline
	timeout time.Duration
	profile string
	outDir  string

	mu      sync.Mutex
	status  int      // the HTTP status of the main frame's last document
	console []string // console messages, exceptions and browser log entries, in order
	csp     []string // Content-Security-Policy violations reported by the browser
}

// Cookie is a cookie the browser holds for the page's URL.
type Cookie struct {
	Name, Value, Domain, Path string
	HTTPOnly, Secure, Session bool
	SameSite                  string // "Strict", "Lax", "None" or "" (not set)
	Expires                   time.Time
}

var (
	rootOnce sync.Once
	rootDir  string // every profile of this test binary lives below it
	rootErr  error
	profiles atomic.Int64
)

// errNotInstalled says that no Chromium binary was found.
var errNotInstalled = errors.New("chromium is not installed")

// ExecPath returns the Chromium binary that New starts: $KEYTURN_TEST_CHROMIUM when set, else
// chromium or chromium-browser on PATH or in /usr/bin.
func ExecPath() (string, error) {
	if p := os.Getenv(EnvChromium); p != "" {
		if isExecutable(p) {
			return p, nil
		}
		return "", fmt.Errorf("%w: %s=%s is not an executable file", errNotInstalled, EnvChromium, p)
	}
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return p, nil
		}
		if p := "/usr/bin/" + name; isExecutable(p) {
			return p, nil
		}
	}
	return "", fmt.Errorf("%w (no chromium or chromium-browser on PATH or in /usr/bin; apt-get install chromium, or set %s)",
		errNotInstalled, EnvChromium)
}

func isExecutable(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.Mode().IsRegular() && st.Mode()&0o111 != 0
}

// New starts a headless Chromium with a fresh profile for this test, and stops it when the test
// ends. It skips the test when Chromium is missing, or fails it in CI (CI=true).
func New(t testing.TB) *Browser {
	t.Helper()
	b, stop := start(t)
	t.Cleanup(stop)
	b.launch(t)
	return b
}

// start makes a browser for t; stop kills it and removes its profile. It does not start
// Chromium yet: launch does.
func start(t testing.TB) (b *Browser, stop func()) {
	t.Helper()
	bin, err := ExecPath()
	if err != nil {
		if os.Getenv("CI") != "true" {
			t.Skipf("browser: %v", err)
		}
		t.Fatalf("browser: %v", err)
	}
	rootOnce.Do(func() { rootDir, rootErr = makeRoot() })
	if rootErr != nil {
		t.Fatalf("browser: %v", rootErr)
	}
	profile := filepath.Join(rootDir, "profile-"+strconv.FormatInt(profiles.Add(1), 10))
	if err := os.Mkdir(profile, 0o700); err != nil {
		t.Fatalf("browser: profile: %v", err)
	}
	b = &Browser{t: t, bin: bin, timeout: DefaultTimeout, profile: profile, outDir: screenshotDir(t)}

	// HOME and the XDG folders point into the profile, so that nothing (crash reports, the
	// NSS database) is written outside it.
	opts := []chromedp.ExecAllocatorOption{chromedp.ExecPath(bin), chromedp.UserDataDir(profile),
		chromedp.WindowSize(Width, Height),
		chromedp.Env("HOME="+profile, "XDG_CONFIG_HOME="+filepath.Join(profile, "config"),
			"XDG_CACHE_HOME="+filepath.Join(profile, "cache"))}
	for _, f := range Flags {
		name, value, hasValue := strings.Cut(strings.TrimPrefix(f, "--"), "=")
		if hasValue {
			opts = append(opts, chromedp.Flag(name, value))
		} else {
			opts = append(opts, chromedp.Flag(name, true))
		}
	}
	allocCtx, allocCancel := chromedp.NewExecAllocator(context.Background(), opts...)
	tabCtx, tabCancel := chromedp.NewContext(allocCtx, chromedp.WithListener(b.listen))
	b.ctx = tabCtx
	return b, func() {
		if t.Failed() {
			b.saveFailure()
		}
		tabCancel()
		allocCancel()
		if err := removeProfile(profile); err != nil {
			t.Errorf("browser: %v", err)
		}
	}
}

// launch starts Chromium and waits until its tab answers.
func (b *Browser) launch(t testing.TB) {
	t.Helper()
	// The first action starts the browser and binds its life to tabCtx, which has no deadline;
	// only starting it is bounded.
	started := make(chan error, 1)
	go func() { started <- chromedp.Do(b.ctx, chromedp.EmulateViewport(Width, Height)) }()
	var err error
	select {
	case err = <-started:
	case <-time.After(60 * time.Second):
		err = errors.New("it did not start within 60 s")
	}
	if err != nil {
		t.Fatalf("browser: start %s: %v", b.bin, err)
	}
}

// makeRoot makes the folder below which this test binary's profiles live, and starts the
// watcher that cleans it up after the binary has gone.
func makeRoot() (string, error) {
	dir, err := os.MkdirTemp("", "keyturn-chromium-")
	if err != nil {
		return "", fmt.Errorf("profile root: %w", err)
	}
	if err := watch(dir); err != nil {
		os.RemoveAll(dir)
		return "", err
	}
	return dir, nil
}

// watchScript waits until the test binary ($KT_PID) has gone, then kills every process whose
// command line names the profile root ($KT_ROOT) until none is left, and removes the root. The
// root comes through the environment, so that the watcher's own command line does not hold it.
const watchScript = `while kill -0 "$KT_PID" 2>/dev/null; do sleep 1; done
n=0
while [ $n -lt 50 ]; do
  found=0
  for d in /proc/[0-9]*; do
    p=${d#/proc/}
    [ "$p" = "$$" ] && continue
    c=$(tr '\0' ' ' < "$d/cmdline" 2>/dev/null) || continue
    case "$c" in *"$KT_ROOT"*) kill -9 "$p" 2>/dev/null && found=1;; esac
  done
  [ $found = 0 ] && break
  n=$((n+1))
  sleep 0.1
done
rm -rf "$KT_ROOT"`

// watch starts the watcher of root in its own session, so that it outlives the test binary.
func watch(root string) error {
	cmd := exec.Command("sh", "-c", watchScript)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "KT_PID=" + strconv.Itoa(os.Getpid()), "KT_ROOT=" + root}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start the browser watcher: %w", err)
	}
	return cmd.Process.Release()
}

// ProfileFlag returns the --user-data-dir flag that every process of b's browser carries on
// its command line: procs.With(b.ProfileFlag()) finds them.
func (b *Browser) ProfileFlag() string { return "--user-data-dir=" + b.profile }

// removeProfile kills what is left of a browser (its zygote, renderers and utility processes
// may outlive the main process for a moment) and removes its profile.
func removeProfile(profile string) error {
	marker := "--user-data-dir=" + profile
	deadline := time.Now().Add(10 * time.Second)
	for quiet := 0; quiet < 3; time.Sleep(20 * time.Millisecond) {
		pids := procs.With(marker)
		if len(pids) == 0 {
			quiet++
			continue
		}
		quiet = 0
		for _, pid := range pids {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("chromium processes %v survive SIGKILL", pids)
		}
	}
	var err error
	for range 50 { // a dying process may still write into the profile
		if err = os.RemoveAll(profile); err == nil {
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	return fmt.Errorf("remove the profile: %w", err)
}

// listen records what tests read later. It runs in chromedp's loop: it must return fast.
func (b *Browser) listen(ev any) {
	b.mu.Lock()
	defer b.mu.Unlock()
	switch ev := ev.(type) {
	case *network.EventResponseReceived:
		if ev.Type == network.ResourceTypeDocument && b.isMainFrame(ev.FrameID) && ev.Response != nil {
			b.status = int(ev.Response.Status)
		}
	case *runtime.EventConsoleAPICalled:
		parts := make([]string, 0, len(ev.Args))
		for _, a := range ev.Args {
			parts = append(parts, remoteText(a))
		}
		b.console = append(b.console, string(ev.Type)+": "+strings.Join(parts, " "))
	case *runtime.EventExceptionThrown:
		d := ev.ExceptionDetails
		text := d.Text
		if d.Exception != nil && d.Exception.Description != "" {
			text += " " + d.Exception.Description
		}
		b.console = append(b.console, "exception: "+text)
	case *cdplog.EventEntryAdded:
		if e := ev.Entry; e != nil {
			b.console = append(b.console, string(e.Level)+": "+e.Text)
			if strings.Contains(e.Text, "Content Security Policy") {
				b.csp = append(b.csp, e.Text)
			}
		}
	}
}

// isMainFrame reports whether id is the tab's main frame, whose id is the target's.
func (b *Browser) isMainFrame(id cdp.FrameID) bool {
	c := chromedp.FromContext(b.ctx)
	return c == nil || c.Target == nil || id == "" || string(id) == string(c.Target.TargetID)
}

func remoteText(o *runtime.RemoteObject) string {
	if o == nil {
		return ""
	}
	if len(o.Value) > 0 {
		if s, err := strconv.Unquote(string(o.Value)); err == nil {
			return s
		}
		return string(o.Value)
	}
	if o.Description != "" {
		return o.Description
	}
	return string(o.Type)
}

// Timeout sets how long each later method may take in the browser.
func (b *Browser) Timeout(d time.Duration) { b.timeout = d }

// Context returns a context for chromedp.Run and chromedp.Do on the browser's tab, bounded by
// the browser's timeout, and its cancel function. It is for what the methods do not cover.
func (b *Browser) Context() (context.Context, context.CancelFunc) {
	return context.WithTimeout(b.ctx, b.timeout)
}

// Do runs chromedp actions on the tab within the browser's timeout, and fails the test on an
// error.
func (b *Browser) Do(what string, steps ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	ctx, cancel := b.Context()
	defer cancel()
	if err := chromedp.Do(ctx, steps...); err != nil {
		b.fatalf("%s: %v", what, err)
	}
}

// Eval evaluates a JavaScript expression in the page and decodes its value into a T.
func Eval[T any](b *Browser, expr string) T {
	b.t.Helper()
	ctx, cancel := b.Context()
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](expr))
	if err != nil {
		b.fatalf("evaluate %q: %v", expr, err)
	}
	return v
}

// Navigate loads url, waits for its load event and returns the HTTP status it was served with.
func (b *Browser) Navigate(url string) int {
	b.t.Helper()
	ctx, cancel := b.Context()
	defer cancel()
	resp, err := chromedp.Run(ctx, chromedp.NavigateResponse(url))
	if err != nil {
		b.fatalf("navigate to %s: %v", url, err)
	}
	if resp == nil {
		return b.Status()
	}
	return int(resp.Status)
}

// Status returns the HTTP status of the last document the tab loaded (0 before any).
func (b *Browser) Status() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.status
}

// URL returns the page's address.
func (b *Browser) URL() string {
	b.t.Helper()
	ctx, cancel := b.Context()
	defer cancel()
	u, err := chromedp.Run(ctx, chromedp.Location())
	if err != nil {
		b.fatalf("location: %v", err)
	}
	return u
}

// Fill replaces the value of the input or textarea that the CSS selector sel matches with
// value, typed key by key (so the page sees input events). The value is never in an error.
func (b *Browser) Fill(sel, value string) {
	b.t.Helper()
	ctx, cancel := b.Context()
	defer cancel()
	err := chromedp.Do(ctx,
		chromedp.WaitVisible(chromedp.CSS(sel)),
		chromedp.Evaluate[chromedp.Void](fmt.Sprintf(`document.querySelector(%s).value = ""`, jsString(sel))),
		chromedp.SendKeys(chromedp.CSS(sel), value))
	if err != nil {
		b.fatalf("fill %s: %v", sel, err)
	}
}

// SetValue sets the value of the form control sel matches (a select, a checkbox's value, a
// hidden input) without typing, and fires its input and change events. The value travels
// inside a script: use Fill for a secret.
func (b *Browser) SetValue(sel, value string) {
	b.t.Helper()
	ctx, cancel := b.Context()
	defer cancel()
	_, err := chromedp.Run(ctx, chromedp.Evaluate[chromedp.Void](fmt.Sprintf(`((sel, v) => {
		const e = document.querySelector(sel);
		if (e === null) throw new Error("no element matches " + sel);
		e.value = v;
		e.dispatchEvent(new Event("input", {bubbles: true}));
		e.dispatchEvent(new Event("change", {bubbles: true}));
	})(%s, %s)`, jsString(sel), jsString(value))))
	if err != nil {
		b.fatalf("set the value of %s: %v", sel, err)
	}
}

// Click clicks the element sel matches, once it is visible. It does not wait for what the
// click leads to: use ClickAndLoad for a link or a submit button.
func (b *Browser) Click(sel string) {
	b.t.Helper()
	ctx, cancel := b.Context()
	defer cancel()
	if err := chromedp.Do(ctx, chromedp.Click(chromedp.CSS(sel), chromedp.NodeVisible)); err != nil {
		b.fatalf("click %s: %v", sel, err)
	}
}

// ClickAndLoad clicks the element sel matches (a link, a submit button), waits until the page
// it leads to has loaded, and returns the HTTP status that page was served with (after
// redirects).
func (b *Browser) ClickAndLoad(sel string) int {
	b.t.Helper()
	ctx, cancel := b.Context()
	defer cancel()
	resp, err := chromedp.RunResponse(ctx, chromedp.Click(chromedp.CSS(sel), chromedp.NodeVisible))
	if err != nil {
		b.fatalf("click %s and load: %v", sel, err)
	}
	if resp == nil {
		return b.Status()
	}
	return int(resp.Status)
}

// WaitVisible waits until an element that sel matches is visible.
func (b *Browser) WaitVisible(sel string) {
	b.t.Helper()
	ctx, cancel := b.Context()
	defer cancel()
	if err := chromedp.Do(ctx, chromedp.WaitVisible(chromedp.CSS(sel))); err != nil {
		b.fatalf("wait for %s to be visible: %v", sel, err)
	}
}

// WaitGone waits until no element matches sel.
func (b *Browser) WaitGone(sel string) {
	b.t.Helper()
	ctx, cancel := b.Context()
	defer cancel()
	if err := chromedp.Do(ctx, chromedp.WaitNotPresent(chromedp.CSS(sel))); err != nil {
		b.fatalf("wait for %s to go: %v", sel, err)
	}
}

// textJS returns the rendered text of the first element sel matches, or null.
const textJS = `(sel) => { const e = document.querySelector(sel); return e === null ? null : e.innerText; }`

// WaitText waits until the rendered text of the first element sel matches contains text, and
// returns that element's text. It keeps looking across page loads (after a form's submit).
func (b *Browser) WaitText(sel, text string) string {
	b.t.Helper()
	ctx, cancel := b.Context()
	defer cancel()
	last, lastErr := "", error(nil)
	for {
		got, err := chromedp.Run(ctx, chromedp.Evaluate[*string](
			fmt.Sprintf(`(%s)(%s)`, textJS, jsString(sel))))
		if err == nil && got != nil {
			if last = *got; strings.Contains(last, text) {
				return last
			}
		}
		if err != nil {
			lastErr = err
		}
		select {
		case <-ctx.Done():
			b.fatalf("wait for %q in %s: it says %q (last error: %v)", text, sel, last, lastErr)
		case <-time.After(25 * time.Millisecond):
		}
	}
}

// Text returns the rendered text (innerText) of the first element sel matches, waiting for
// one to exist.
func (b *Browser) Text(sel string) string {
	b.t.Helper()
	ctx, cancel := b.Context()
	defer cancel()
	s, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(sel)))
	if err != nil {
		b.fatalf("text of %s: %v", sel, err)
	}
	return s
}

// Has reports whether an element matches sel now, without waiting.
func (b *Browser) Has(sel string) bool {
	b.t.Helper()
	return Eval[bool](b, fmt.Sprintf(`document.querySelector(%s) !== null`, jsString(sel)))
}

// HTML returns the page's whole HTML as the browser now holds it (the DOM serialized, not the
// bytes the server sent).
func (b *Browser) HTML() string {
	b.t.Helper()
	return Eval[string](b, `document.documentElement.outerHTML`)
}

// Cookies returns the cookies the browser holds for the page's URL, HttpOnly ones included.
func (b *Browser) Cookies() []Cookie {
	b.t.Helper()
	ctx, cancel := b.Context()
	defer cancel()
	res, err := chromedp.Call(ctx, network.GetCookies, network.GetCookiesParams{})
	if err != nil {
		b.fatalf("cookies: %v", err)
	}
	out := make([]Cookie, 0, len(res.Cookies))
	for _, c := range res.Cookies {
		k := Cookie{Name: c.Name, Value: c.Value, Domain: c.Domain, Path: c.Path, HTTPOnly: c.HTTPOnly,
			Secure: c.Secure, Session: c.Session, SameSite: string(c.SameSite)}
		if !c.Session && c.Expires > 0 {
			k.Expires = time.Unix(int64(c.Expires), 0)
		}
		out = append(out, k)
	}
	return out
}

// Cookie returns the cookie named name for the page's URL, and whether there is one.
func (b *Browser) Cookie(name string) (Cookie, bool) {
	b.t.Helper()
	for _, c := range b.Cookies() {
		if c.Name == name {
			return c, true
		}
	}
	return Cookie{}, false
}

// Console returns what the pages wrote to the console so far, the uncaught exceptions and the
// browser's own log entries (CSP violations, failed loads), in order, each as "level: text".
func (b *Browser) Console() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]string(nil), b.console...)
}

// CSPViolations returns the browser's reports of what a Content-Security-Policy refused so
// far (an inline script, a script from another origin, a frame), in order.
func (b *Browser) CSPViolations() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]string(nil), b.csp...)
}

// Viewport resizes the page's viewport, to see it as a phone would (e.g. 390×844, mobile).
func (b *Browser) Viewport(width, height int, mobile bool) {
	b.t.Helper()
	var opts []chromedp.EmulateViewportOption
	if mobile {
		opts = append(opts, chromedp.EmulateMobile, chromedp.EmulateTouch)
	}
	b.Do(fmt.Sprintf("viewport %d×%d", width, height), chromedp.EmulateViewport(int64(width), int64(height), opts...))
}

// Screenshot saves a PNG of the whole page (beyond the window) as NAME.png in the test's
// screenshot folder, and returns its path. See OutputDir.
func (b *Browser) Screenshot(name string) string {
	b.t.Helper()
	path, err := b.screenshot(name)
	if err != nil {
		b.t.Fatalf("browser: screenshot %s: %v", name, err)
	}
	return path
}

func (b *Browser) screenshot(name string) (string, error) {
	ctx, cancel := b.Context()
	defer cancel()
	png, err := chromedp.Run(ctx, fullPage)
	if err != nil {
		return "", err
	}
	if err := os.MkdirAll(b.outDir, 0o755); err != nil {
		return "", err
	}
	path := filepath.Join(b.outDir, safeName(name)+".png")
	if err := os.WriteFile(path, png, 0o644); err != nil {
		return "", err
	}
	return path, nil
}

// fullPage captures the whole page as a PNG: the scrollable area, not only the viewport.
func fullPage(ctx context.Context, t *chromedp.Target) ([]byte, error) {
	m, err := cdp.Call(ctx, t, page.GetLayoutMetrics, cdp.Empty{})
	if err != nil {
		return nil, fmt.Errorf("layout metrics: %w", err)
	}
	if m.CSSContentSize == nil {
		return nil, errors.New("layout metrics: no content size")
	}
	beyond, fromSurface := true, true
	r, err := cdp.Call(ctx, t, page.CaptureScreenshot, page.CaptureScreenshotParams{
		Format:                page.CaptureScreenshotFormatPng,
		Clip:                  &page.Viewport{Width: m.CSSContentSize.Width, Height: m.CSSContentSize.Height, Scale: 1},
		CaptureBeyondViewport: &beyond,
		FromSurface:           &fromSurface,
	})
	if err != nil {
		return nil, fmt.Errorf("capture: %w", err)
	}
	return r.Data, nil
}

// fatalf fails the test with the page's address in the message.
func (b *Browser) fatalf(format string, args ...any) {
	b.t.Helper()
	url := "?"
	ctx, cancel := context.WithTimeout(b.ctx, 2*time.Second)
	if u, err := chromedp.Run(ctx, chromedp.Location()); err == nil {
		url = u
	}
	cancel()
	b.t.Fatalf("browser (at %s): %s", url, fmt.Sprintf(format, args...))
}

// saveFailure saves a screenshot of a failed test's page, and says where.
func (b *Browser) saveFailure() {
	if path, err := b.screenshot("failed"); err == nil {
		b.t.Logf("browser: the page when the test failed: %s", path)
	}
}

// OutputDir returns the folder that tests write their output to: $KEYTURN_TEST_OUTPUT, or else
// test-output/ at the root of the repository (the folder holding go.mod), which git ignores.
func OutputDir() (string, error) {
	if d := os.Getenv(EnvOutput); d != "" {
		return filepath.Abs(d)
	}
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for d := dir; ; d = filepath.Dir(d) {
		if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
			return filepath.Join(d, "test-output"), nil
		}
		if filepath.Dir(d) == d {
			return "", fmt.Errorf("no go.mod above %s: set %s", dir, EnvOutput)
		}
	}
}

// screenshotDir is where t's screenshots go: OutputDir()/screenshots/<test name>/.
func screenshotDir(t testing.TB) string {
	t.Helper()
	out, err := OutputDir()
	if err != nil {
		t.Fatalf("browser: %v", err)
	}
	return filepath.Join(out, "screenshots", safeName(t.Name()))
}

// jsString returns s as a JavaScript string literal.
func jsString(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

// safeName turns a test or screenshot name into one path element.
func safeName(s string) string {
	return strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-', r == '_', r == '.':
			return r
		}
		return '_'
	}, s)
}
