// Package browser_test opens the relay's dashboard in a real headless
// browser (Debian's chromium, driven by chromedp) against a real relay and
// a real supervisor.
package browser_test

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"

	"github.com/enhanced-tunnel/tunnel/actors/relay"
	"github.com/enhanced-tunnel/tunnel/supervisor/agent"
	"github.com/enhanced-tunnel/tunnel/test/harness"
)

const (
	keyTTS    = "browser-tts-VGhpcyBpcyBhIGtleQ"
	keyVoices = "browser-voices-QW5vdGhlciBrZXk"
	// patience bounds each wait for the page to show a change: the page
	// updates once a second.
	patience = 15 * time.Second
)

// requireTools fails instead of skipping when a tool is missing (CI).
func requireTools() bool { return os.Getenv("TUNNEL_REQUIRE_TOOLS") != "" }

// startBrowser starts a headless chromium for the test, stopped when it
// ends; the context runs actions in its one tab.
func startBrowser(t *testing.T) context.Context {
	t.Helper()
	path, err := exec.LookPath("chromium")
	if err != nil {
		if requireTools() {
			t.Fatal("chromium is not installed (Debian package chromium), and TUNNEL_REQUIRE_TOOLS is set")
		}
		t.Skip("chromium is not installed (Debian package chromium); skipping the dashboard's browser test")
	}
	// A chromium that exits before it listens (about one start in twenty
	// on a loaded 2-core machine, printing nothing but its usual dbus
	// noise) is started again: the launch is the tool's, not what the test
	// checks. Three starts at most, each failure in the test's log.
	const starts = 3
	for i := 1; ; i++ {
		ctx, err := launch(t, path)
		if err == nil {
			return ctx
		}
		if i == starts {
			t.Fatalf("starting chromium, %d tries: %v", starts, err)
		}
		t.Logf("starting chromium, try %d: %v", i, err)
	}
}

// launch starts one headless chromium, stopped when the test ends.
func launch(t *testing.T, path string) (context.Context, error) {
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(path),
		chromedp.Headless,
		chromedp.NoSandbox, // CI runs as root, where chromium's sandbox refuses to start
		chromedp.DisableGPU,
		chromedp.UserDataDir(t.TempDir()),
	)
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(allocCtx, chromedp.WithLogf(t.Logf))
	t.Cleanup(func() {
		cancel()
		cancelAlloc()
	})
	// The first Run starts the browser; it lives as long as ctx.
	if err := chromedp.Do(ctx); err != nil {
		return nil, err
	}
	return ctx, nil
}

// tunnelRow is what the page shows of one tunnel.
type tunnelRow struct {
	Sessions string `json:"sessions"`
	Detail   int    `json:"detail"` // session lines under the count
	State    string `json:"state"`  // the row's class: up or down
	LastSeen string `json:"last_seen"`
	Requests string `json:"requests"`
}

// pageView is what the page shows: its tunnels by name, and the live
// indicator.
type pageView struct {
	Live       string               `json:"live"`
	Updated    string               `json:"updated"`
	Tunnels    map[string]tunnelRow `json:"tunnels"`
	Violations []string             `json:"violations"`
}

const readPage = `(() => {
  const tunnels = {};
  for (const tr of document.querySelectorAll("#tunnels tbody tr")) {
    tunnels[tr.dataset.tunnel] = {
      sessions: tr.querySelector("td.sessions .count").textContent,
      detail: tr.querySelectorAll("td.sessions .session").length,
      state: tr.className,
      last_seen: tr.querySelector("td.lastseen").textContent,
      requests: tr.querySelector("td.requests").textContent,
    };
  }
  return {
    live: document.getElementById("live").textContent,
    updated: document.body.dataset.updated || "",
    tunnels: tunnels,
    violations: window.__cspViolations || [],
  };
})()`

func read(t *testing.T, ctx context.Context) pageView {
	t.Helper()
	actx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	v, err := chromedp.Run(actx, chromedp.Evaluate[pageView](readPage))
	if err != nil {
		t.Fatalf("reading the page: %v", err)
	}
	return v
}

func waitPage(t *testing.T, ctx context.Context, what string, cond func(pageView) bool) pageView {
	t.Helper()
	var v pageView
	deadline := time.Now().Add(patience)
	for time.Now().Before(deadline) {
		if v = read(t, ctx); cond(v) {
			return v
		}
		time.Sleep(100 * time.Millisecond)
	}
	shown, _ := json.MarshalIndent(v, "", "  ")
	t.Fatalf("timed out waiting for the page to show %s; it shows:\n%s", what, shown)
	return v
}

// The dashboard in a browser: it lists the relay's tunnels, shows a
// supervisor's session within seconds of its connecting and its going
// within seconds of its leaving, updated live, with no CSP violation.
func TestDashboardInBrowser(t *testing.T) {
	ctx := startBrowser(t)
	r := harness.StartRelay(t, keyTTS, nil, func(c *relay.Config) {
		c.AuthToken = ""
		c.Keys = map[string]string{"tts": keyTTS, "voices": keyVoices}
	})

	// Record CSP violations from the first script on: the page must need
	// nothing its policy forbids.
	if _, err := chromedp.Call(ctx, page.AddScriptToEvaluateOnNewDocument, page.AddScriptToEvaluateOnNewDocumentParams{
		Source: `window.__cspViolations = [];
document.addEventListener("securitypolicyviolation", (e) => window.__cspViolations.push(e.violatedDirective + " " + e.blockedURI));`,
	}); err != nil {
		t.Fatal(err)
	}
	nctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := chromedp.Do(nctx, chromedp.Navigate(harness.AdminURL(r)+"/")); err != nil {
		t.Fatalf("opening the dashboard: %v", err)
	}
	title, err := chromedp.Run(nctx, chromedp.Title())
	if err != nil || title != "tunnel-relay" {
		t.Fatalf("title %q (%v)", title, err)
	}

	v := waitPage(t, ctx, "both tunnels, without a session, live", func(v pageView) bool {
		return v.Live == "live" && len(v.Tunnels) == 2 && v.Tunnels["tts"].Sessions == "0" && v.Tunnels["voices"].Sessions == "0"
	})
	if v.Tunnels["tts"].State != "down" || v.Tunnels["tts"].LastSeen != "never" {
		t.Errorf("tunnel tts before any supervisor: %+v", v.Tunnels["tts"])
	}

	cfg := agent.DefaultConfig()
	cfg.Tunnel.RelayURL = harness.TunnelURL(r)
	cfg.Tunnel.APIKey = keyTTS
	cfg.Tunnel.Tunnel = "tts"
	cfg.Tunnel.Connections = 1
	cfg.Tunnel.CloseTimeout = 2 * time.Second
	cfg.Forward = "http://127.0.0.1:1"
	a, _ := harness.StartAgent(t, cfg)
	connected := time.Now()
	v = waitPage(t, ctx, "tunnel tts with 1 session", func(v pageView) bool {
		return v.Tunnels["tts"].Sessions == "1" && v.Tunnels["tts"].Detail == 1
	})
	t.Logf("the page showed the session %v after the supervisor started", time.Since(connected).Round(time.Millisecond))
	if v.Tunnels["tts"].State != "up" || v.Tunnels["tts"].LastSeen != "now" || v.Tunnels["voices"].Sessions != "0" {
		t.Errorf("with a supervisor of tts: %+v", v.Tunnels)
	}

	sctx, scancel := context.WithTimeout(context.Background(), harness.StopTimeout)
	defer scancel()
	if err := a.Shutdown(sctx); err != nil {
		t.Fatalf("agent Shutdown: %v", err)
	}
	stopped := time.Now()
	v = waitPage(t, ctx, "tunnel tts with 0 sessions", func(v pageView) bool {
		return v.Tunnels["tts"].Sessions == "0" && v.Tunnels["tts"].Detail == 0
	})
	t.Logf("the page showed the session gone %v after the supervisor stopped", time.Since(stopped).Round(time.Millisecond))
	if v.Tunnels["tts"].State != "down" || v.Tunnels["tts"].LastSeen == "never" {
		t.Errorf("after the supervisor of tts left: %+v", v.Tunnels["tts"])
	}
	if v.Live != "live" {
		t.Errorf("live indicator %q, want live (server-sent events)", v.Live)
	}
	if len(v.Violations) > 0 {
		t.Errorf("Content-Security-Policy violations: %s", strings.Join(v.Violations, "; "))
	}
}

// Without server-sent events the page polls /api/tunnels.
func TestDashboardPollsWithoutEventSource(t *testing.T) {
	ctx := startBrowser(t)
	r := harness.StartRelay(t, keyTTS, nil, func(c *relay.Config) {
		c.AuthToken = ""
		c.Keys = map[string]string{"tts": keyTTS}
	})
	if _, err := chromedp.Call(ctx, page.AddScriptToEvaluateOnNewDocument, page.AddScriptToEvaluateOnNewDocumentParams{
		Source: `delete window.EventSource;`,
	}); err != nil {
		t.Fatal(err)
	}
	nctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := chromedp.Do(nctx, chromedp.Navigate(harness.AdminURL(r)+"/")); err != nil {
		t.Fatalf("opening the dashboard: %v", err)
	}
	first := waitPage(t, ctx, "tunnel tts, polled", func(v pageView) bool {
		return v.Live == "polling" && v.Tunnels["tts"].Sessions == "0"
	})
	waitPage(t, ctx, "a later poll", func(v pageView) bool { return v.Updated != "" && v.Updated != first.Updated })
}
