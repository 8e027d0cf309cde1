package httpapi

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/enhanced-tunnel/tunnel/messages"
	"github.com/enhanced-tunnel/tunnel/supervisor/forward"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// fakeStatus is a StatusSource whose status the test sets.
type fakeStatus struct {
	mu sync.Mutex
	s  messages.Status
}

func (f *fakeStatus) Status() messages.Status {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.s
}

func ptr(v float64) *float64 { return &v }

func connected() messages.Status {
	return messages.Status{
		State:     messages.Authenticated,
		Connected: true,
		Tunnel:    "default",
		Health: messages.Health{
			SuccessRate:          0.75,
			TotalAttempts:        4,
			Successes:            3,
			FailureTypes:         map[string]int{"AUTH_FAILURE": 1, "NETWORK_ERROR": 2},
			Drops:                2,
			Uptime:               ptr(12.5),
			LastConnectTime:      ptr(0.004),
			LastHeartbeatRTT:     ptr(0.012),
			MeanHeartbeatRTT:     0.01,
			TimeSinceLastSuccess: ptr(12.5),
			Transitions:          []messages.Transition{},
		},
		CircuitBreaker: messages.BreakerReport{State: messages.BreakerClosed, Openings: 1},
	}
}

// twoConnections is a tunnel whose connection 0 is up and connection 1
// behind its open breaker.
func twoConnections() messages.Status {
	s := connected()
	s.ReadyConnections = 1
	s.Connections = []messages.ConnectionStatus{
		{Index: 0, RelayURL: "wss://relay-a.example/tunnel", State: messages.Authenticated, Connected: true,
			Health:         messages.Health{SuccessRate: 1, TotalAttempts: 1, Successes: 1, FailureTypes: map[string]int{"NETWORK_ERROR": 2}},
			CircuitBreaker: messages.BreakerReport{State: messages.BreakerClosed}},
		{Index: 1, RelayURL: "wss://relay-b.example/tunnel", State: messages.CircuitBreaker,
			Health: messages.Health{TotalAttempts: 5, ConsecutiveFailures: 5,
				FailureTypes: map[string]int{"CONNECTION_REFUSED": 4, "TIMEOUT": 1}},
			CircuitBreaker: messages.BreakerReport{Active: true, State: messages.BreakerOpen, RecoveryIn: 120, Openings: 1}},
	}
	return s
}

func serve(t *testing.T, cfg Config) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(NewHandler(cfg))
	t.Cleanup(srv.Close)
	return srv
}

func get(t *testing.T, url string) (int, http.Header, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, resp.Header, string(b)
}

func TestHealth(t *testing.T) {
	breaker := messages.Status{State: messages.CircuitBreaker, Health: messages.Health{SuccessRate: 0},
		CircuitBreaker: messages.BreakerReport{Active: true, State: messages.BreakerOpen, RecoveryIn: 200}}
	tests := []struct {
		name     string
		status   messages.Status
		wantCode int
		wantBody string
	}{
		{"connected", connected(), 200, `{"tunnel_connected":true,"tunnel_health":0.75,"status":"healthy"}`},
		{"reconnecting", messages.Status{State: messages.Connecting, Health: messages.Health{SuccessRate: 0.5}},
			503, `{"tunnel_connected":false,"tunnel_health":0.5,"status":"degraded"}`},
		{"breaker open", breaker, 503, `{"tunnel_connected":false,"tunnel_health":0,"status":"degraded"}`},
		{"one of two connections up", twoConnections(), 200, `{"tunnel_connected":true,"tunnel_health":0.75,"status":"healthy"}`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			srv := serve(t, Config{Status: &fakeStatus{s: tc.status}})
			code, h, body := get(t, srv.URL+"/health")
			if code != tc.wantCode || strings.TrimSpace(body) != tc.wantBody {
				t.Errorf("GET /health = %d %s, want %d %s", code, body, tc.wantCode, tc.wantBody)
			}
			if ct := h.Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type %q", ct)
			}
		})
	}
}

func TestStatusIsTheFullStatusJSON(t *testing.T) {
	srv := serve(t, Config{Status: &fakeStatus{s: connected()}})
	code, _, body := get(t, srv.URL+"/status")
	if code != 200 {
		t.Fatalf("GET /status = %d", code)
	}
	var got map[string]any
	if err := json.Unmarshal([]byte(body), &got); err != nil {
		t.Fatal(err)
	}
	want, _ := json.Marshal(connected())
	var wantMap map[string]any
	json.Unmarshal(want, &wantMap)
	gotJSON, _ := json.Marshal(got)
	wantJSON, _ := json.Marshal(wantMap)
	if string(gotJSON) != string(wantJSON) {
		t.Errorf("GET /status\n got %s\nwant %s", gotJSON, wantJSON)
	}
	if got["state"] != "AUTHENTICATED" {
		t.Errorf("state %v", got["state"])
	}
}

func TestOnlyGet(t *testing.T) {
	srv := serve(t, Config{Status: &fakeStatus{s: connected()}})
	for _, path := range []string{"/health", "/status", "/metrics"} {
		resp, err := http.Post(srv.URL+path, "text/plain", nil)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusMethodNotAllowed {
			t.Errorf("POST %s = %d, want 405", path, resp.StatusCode)
		}
	}
}

func TestMetrics(t *testing.T) {
	status := &fakeStatus{s: connected()}
	fm := NewForwardMetrics()
	fm.Forwarded(forward.Result{Status: 200, BytesIn: 10, BytesOut: 1000, Duration: 20 * time.Millisecond})
	fm.Forwarded(forward.Result{Status: 200, BytesIn: 5, BytesOut: 500, Duration: 2 * time.Second})
	fm.Forwarded(forward.Result{Status: 502, BytesOut: 30, Duration: time.Millisecond})
	fm.Forwarded(forward.Result{Duration: time.Millisecond})
	srv := serve(t, Config{Status: status, Forward: fm, InFlight: func() int { return 2 }})

	code, h, body := get(t, srv.URL+"/metrics")
	if code != 200 || !strings.HasPrefix(h.Get("Content-Type"), "text/plain") {
		t.Fatalf("GET /metrics = %d %s", code, h.Get("Content-Type"))
	}
	for _, want := range []string{
		`tunnel_state{state="AUTHENTICATED"} 1`,
		`tunnel_state{state="CONNECTING"} 0`,
		`tunnel_state{state="CIRCUIT_BREAKER"} 0`,
		`tunnel_connected 1`,
		`tunnel_connection_attempts_total{result="success"} 3`,
		`tunnel_connection_attempts_total{result="failure"} 1`,
		`tunnel_connection_success_ratio 0.75`,
		`tunnel_consecutive_failures 0`,
		`tunnel_failures_total{type="AUTH_FAILURE"} 1`,
		`tunnel_failures_total{type="NETWORK_ERROR"} 2`,
		`tunnel_failures_total{type="TIMEOUT"} 0`,
		`tunnel_failures_total{type="UNKNOWN"} 0`,
		`tunnel_connection_drops_total 2`,
		`tunnel_connection_uptime_seconds 12.5`,
		`tunnel_connect_time_seconds 0.004`,
		`tunnel_breaker_state{state="closed"} 1`,
		`tunnel_breaker_state{state="open"} 0`,
		`tunnel_breaker_openings_total 1`,
		`tunnel_breaker_recovery_seconds 0`,
		`tunnel_heartbeat_rtt_seconds 0.012`,
		`tunnel_heartbeat_rtt_mean_seconds 0.01`,
		`tunnel_forward_requests_total{code="200"} 2`,
		`tunnel_forward_requests_total{code="502"} 1`,
		`tunnel_forward_requests_total{code="none"} 1`,
		`tunnel_forward_request_bytes_total 15`,
		`tunnel_forward_response_bytes_total 1530`,
		`tunnel_forward_request_duration_seconds_bucket{le="0.025"} 3`,
		`tunnel_forward_request_duration_seconds_bucket{le="+Inf"} 4`,
		`tunnel_forward_request_duration_seconds_count 4`,
		`tunnel_forward_in_flight 2`,
		`go_goroutines `,
	} {
		if !strings.Contains(body, "\n"+want) {
			t.Errorf("metrics lack %q", want)
		}
	}

	// The state is read at each scrape.
	status.mu.Lock()
	status.s = messages.Status{State: messages.CircuitBreaker, Health: messages.Health{FailureTypes: map[string]int{"TIMEOUT": 5}},
		CircuitBreaker: messages.BreakerReport{Active: true, State: messages.BreakerOpen, RecoveryIn: 250, Openings: 2}}
	status.mu.Unlock()
	_, _, body = get(t, srv.URL+"/metrics")
	for _, want := range []string{
		`tunnel_state{state="CIRCUIT_BREAKER"} 1`,
		`tunnel_connected 0`,
		`tunnel_connection_attempts_total{result="failure"} 5`,
		`tunnel_connection_uptime_seconds 0`,
		`tunnel_breaker_state{state="open"} 1`,
		`tunnel_breaker_openings_total 2`,
		`tunnel_breaker_recovery_seconds 250`,
	} {
		if !strings.Contains(body, "\n"+want) {
			t.Errorf("second scrape lacks %q", want)
		}
	}
	for _, absent := range []string{"tunnel_heartbeat_rtt_seconds ", "tunnel_connect_time_seconds "} {
		if strings.Contains(body, "\n"+absent) {
			t.Errorf("%q exported before it is known", absent)
		}
	}
}

// Each connection has its series, labelled with its index, besides the
// tunnel's as a whole.
func TestMetricsPerConnection(t *testing.T) {
	srv := serve(t, Config{Status: &fakeStatus{s: twoConnections()}})
	_, _, body := get(t, srv.URL+"/metrics")
	for _, want := range []string{
		`tunnel_connected 1`,
		`tunnel_ready_connections 1`,
		`tunnel_state{state="AUTHENTICATED"} 1`,
		`tunnel_connection_state{connection="0",state="AUTHENTICATED"} 1`,
		`tunnel_connection_state{connection="0",state="CIRCUIT_BREAKER"} 0`,
		`tunnel_connection_state{connection="1",state="CIRCUIT_BREAKER"} 1`,
		`tunnel_connection_state{connection="1",state="AUTHENTICATED"} 0`,
		`tunnel_connection_connected{connection="0"} 1`,
		`tunnel_connection_connected{connection="1"} 0`,
		`tunnel_connection_failures_total{connection="0",type="NETWORK_ERROR"} 2`,
		`tunnel_connection_failures_total{connection="0",type="TIMEOUT"} 0`,
		`tunnel_connection_failures_total{connection="1",type="CONNECTION_REFUSED"} 4`,
		`tunnel_connection_failures_total{connection="1",type="TIMEOUT"} 1`,
		`tunnel_connection_failures_total{connection="1",type="AUTH_FAILURE"} 0`,
		`tunnel_connection_consecutive_failures{connection="0"} 0`,
		`tunnel_connection_consecutive_failures{connection="1"} 5`,
		`tunnel_connection_breaker_state{connection="0",state="closed"} 1`,
		`tunnel_connection_breaker_state{connection="1",state="open"} 1`,
		`tunnel_connection_breaker_state{connection="1",state="half-open"} 0`,
	} {
		if !strings.Contains(body, "\n"+want+"\n") {
			t.Errorf("metrics lack %q", want)
		}
	}
	if strings.Contains(body, "relay-a.example") {
		t.Error("a relay URL is a label: every URL change would start new series")
	}
}

// A status without connections (one connection's own) has no
// per-connection series.
func TestMetricsWithoutConnections(t *testing.T) {
	srv := serve(t, Config{Status: &fakeStatus{s: connected()}})
	_, _, body := get(t, srv.URL+"/metrics")
	if strings.Contains(body, `{connection="`) || !strings.Contains(body, "\ntunnel_ready_connections 0\n") {
		t.Errorf("GET /metrics:\n%s", body)
	}
}

func TestMetricsWithoutForwarding(t *testing.T) {
	srv := serve(t, Config{Status: &fakeStatus{s: connected()}})
	code, _, body := get(t, srv.URL+"/metrics")
	if code != 200 || strings.Contains(body, "tunnel_forward_") || !strings.Contains(body, "tunnel_connected 1") {
		t.Fatalf("GET /metrics = %d\n%s", code, body)
	}
}

// Profiles are served only when asked for.
func TestProfilingOnlyWhenEnabled(t *testing.T) {
	for _, tc := range []struct {
		profiling bool
		want      int
	}{{false, http.StatusNotFound}, {true, http.StatusOK}} {
		srv := serve(t, Config{Status: &fakeStatus{s: connected()}, Profiling: tc.profiling})
		resp, err := http.Get(srv.URL + "/debug/pprof/")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != tc.want {
			t.Errorf("Profiling %v: GET /debug/pprof/ = %d, want %d", tc.profiling, resp.StatusCode, tc.want)
		}
	}
}
