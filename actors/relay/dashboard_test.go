package relay_test

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/enhanced-tunnel/tunnel/actors/relay"
	"github.com/enhanced-tunnel/tunnel/messages/wire"
	"github.com/enhanced-tunnel/tunnel/test/harness"
)

// dashboardView is the part of /api/tunnels the tests read.
type dashboardView struct {
	Time     time.Time `json:"time"`
	Sessions int       `json:"sessions"`
	BytesIn  float64   `json:"bytes_in"`
	BytesOut float64   `json:"bytes_out"`
	Tunnels  []struct {
		Name        string `json:"name"`
		Sessions    int    `json:"sessions"`
		SessionList []struct {
			ID       string `json:"id"`
			Instance string `json:"instance"`
			Index    int    `json:"index"`
		} `json:"session_list"`
		Requests  float64    `json:"requests"`
		Errors4xx float64    `json:"errors_4xx"`
		Errors5xx float64    `json:"errors_5xx"`
		LastSeen  *time.Time `json:"last_seen"`
	} `json:"tunnels"`
}

func getDashboard(t *testing.T, url string) (*http.Response, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, string(body)
}

func checkSecurityHeaders(t *testing.T, resp *http.Response) {
	t.Helper()
	if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'self'") {
		t.Errorf("%s: Content-Security-Policy %q", resp.Request.URL.Path, csp)
	}
	if got := resp.Header.Get("X-Content-Type-Options"); got != "nosniff" {
		t.Errorf("%s: X-Content-Type-Options %q", resp.Request.URL.Path, got)
	}
}

// The page and its assets come from the binary, with the security headers,
// and refer to nothing outside the relay.
func TestDashboardPage(t *testing.T) {
	r := startRelay(t, func(c *relay.Config) { c.HoldTimeout = 0 })
	for path, typ := range map[string]string{
		"/": "text/html", "/dashboard/app.js": "text/javascript", "/dashboard/style.css": "text/css",
		"/api/tunnels": "application/json",
	} {
		resp, body := getDashboard(t, adminURL(r)+path)
		if resp.StatusCode != http.StatusOK {
			t.Errorf("GET %s: %s", path, resp.Status)
			continue
		}
		if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, typ) {
			t.Errorf("GET %s: Content-Type %q, want %s", path, ct, typ)
		}
		checkSecurityHeaders(t, resp)
		for _, external := range []string{"http://", "https://", "//fonts", "cdn"} {
			if path != "/api/tunnels" && strings.Contains(body, external) {
				t.Errorf("GET %s refers to %q", path, external)
			}
		}
	}
	_, page := getDashboard(t, adminURL(r)+"/")
	for _, want := range []string{`src="/dashboard/app.js"`, `href="/dashboard/style.css"`, `id="tunnels"`} {
		if !strings.Contains(page, want) {
			t.Errorf("the page lacks %s", want)
		}
	}
	// The public listener serves no dashboard: /api/tunnels there is the
	// tunnel "default", which has no session (503 at once).
	resp, _ := getDashboard(t, baseURL(r)+"/api/tunnels")
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Content-Security-Policy") != "" {
		t.Errorf("the public listener serves the dashboard")
	}
}

func fetchDashboard(t *testing.T, r string) dashboardView {
	t.Helper()
	resp, body := getDashboard(t, r+"/api/tunnels")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /api/tunnels: %s %s", resp.Status, body)
	}
	for _, key := range []string{defaultKey, keyA, keyB} {
		if strings.Contains(body, key) {
			t.Fatalf("/api/tunnels shows a key: %s", body)
		}
	}
	var v dashboardView
	if err := json.Unmarshal([]byte(body), &v); err != nil {
		t.Fatalf("/api/tunnels: %v: %s", err, body)
	}
	return v
}

// /api/tunnels lists every tunnel with a key, its sessions and its
// requests by class, from the relay's own state.
func TestDashboardTunnels(t *testing.T) {
	r := startRelay(t, nil)
	admin := adminURL(r)
	v := fetchDashboard(t, admin)
	var names []string
	for _, tn := range v.Tunnels {
		names = append(names, tn.Name)
		if tn.Sessions != 0 || tn.LastSeen != nil {
			t.Errorf("tunnel %s before any session: %+v", tn.Name, tn)
		}
	}
	if strings.Join(names, ",") != "a,b,default" {
		t.Fatalf("tunnels %v, want a,b,default", names)
	}

	s := connect(t, r, keyA, "a", func(_ context.Context, req *wire.Frame, _ io.Reader) reply {
		switch req.Path {
		case "/missing":
			return reply{Status: http.StatusNotFound}
		case "/broken":
			return reply{Status: http.StatusBadGateway}
		}
		return reply{Status: http.StatusOK, Body: []byte("ok")}
	})
	for _, path := range []string{"/ok", "/ok", "/missing", "/broken"} {
		resp, err := http.Get(baseURL(r) + "/t/a" + path)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	harness.Eventually(t, wait, "the dashboard to show tunnel a's session and requests", func() bool {
		v = fetchDashboard(t, admin)
		a := v.Tunnels[0]
		return a.Sessions == 1 && len(a.SessionList) == 1 && a.Requests == 4 && a.Errors4xx == 1 && a.Errors5xx == 1 &&
			a.LastSeen != nil && v.Sessions == 1 && v.BytesIn > 0 && v.BytesOut > 0
	})
	if v.Tunnels[1].Sessions != 0 || v.Tunnels[2].Requests != 0 {
		t.Errorf("tunnels b and default: %+v", v.Tunnels[1:])
	}

	s.close()
	harness.Eventually(t, wait, "the dashboard to show tunnel a without a session", func() bool {
		v = fetchDashboard(t, admin)
		a := v.Tunnels[0]
		return a.Sessions == 0 && len(a.SessionList) == 0 && a.LastSeen != nil && !a.LastSeen.After(v.Time)
	})
}

// /events sends a snapshot a second, and an open stream does not hold the
// relay's close up.
func TestDashboardEvents(t *testing.T) {
	r := startRelay(t, nil)
	resp, err := http.Get(adminURL(r) + "/events")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Fatalf("Content-Type %q", ct)
	}
	checkSecurityHeaders(t, resp)
	lines := bufio.NewScanner(resp.Body)
	lines.Buffer(nil, 1<<20)
	var events []dashboardView
	start := time.Now()
	for len(events) < 2 && lines.Scan() {
		data, ok := strings.CutPrefix(lines.Text(), "data: ")
		if !ok {
			continue
		}
		var v dashboardView
		if err := json.Unmarshal([]byte(data), &v); err != nil {
			t.Fatalf("event %q: %v", data, err)
		}
		events = append(events, v)
	}
	if len(events) != 2 || len(events[0].Tunnels) != 3 {
		t.Fatalf("events %+v (%v)", events, lines.Err())
	}
	if took := time.Since(start); took < 500*time.Millisecond || took > 5*time.Second {
		t.Errorf("two events took %v, want about a second", took)
	}

	closed := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := r.Close(ctx); err != nil {
		t.Fatalf("Close with an event stream open: %v", err)
	}
	if took := time.Since(closed); took > 3*time.Second {
		t.Errorf("Close took %v with an event stream open", took)
	}
	if _, err := io.Copy(io.Discard, resp.Body); err != nil {
		t.Logf("stream after close: %v", err)
	}
}
