package main

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/enhanced-tunnel/tunnel/messages"
	"github.com/enhanced-tunnel/tunnel/supervisor/httpapi"
)

type fixedStatus messages.Status

func (s fixedStatus) Status() messages.Status { return messages.Status(s) }

func ptr(v float64) *float64 { return &v }

// rows reads the status table of the tunnel as a whole back: each row's
// name and value.
func rows(out string) map[string]string {
	table, _, _ := strings.Cut(out, "\n\n")
	rows := map[string]string{}
	for _, line := range strings.Split(strings.TrimRight(table, "\n"), "\n") {
		name, value, _ := strings.Cut(strings.TrimSpace(line), "  ")
		rows[name] = strings.TrimSpace(value)
	}
	return rows
}

// columns splits a row of the connections table into its cells, which
// two spaces or more separate.
var columns = regexp.MustCompile(`\s{2,}`)

// connectionRows reads the connections table back, the header first; nil
// when there is none.
func connectionRows(out string) [][]string {
	_, table, found := strings.Cut(out, "\n\n")
	if !found {
		return nil
	}
	var rows [][]string
	for _, line := range strings.Split(strings.TrimRight(table, "\n"), "\n") {
		rows = append(rows, columns.Split(strings.TrimSpace(line), -1))
	}
	return rows
}

func TestStatusCommand(t *testing.T) {
	tests := []struct {
		name   string
		status messages.Status
		want   map[string]string
	}{
		{
			name: "connected",
			status: messages.Status{State: messages.Authenticated, Connected: true, Tunnel: "default",
				Health: messages.Health{SuccessRate: 0.75, TotalAttempts: 4, Successes: 3, Uptime: ptr(62.4),
					TimeSinceLastSuccess: ptr(62.4), FailureTypes: map[string]int{"AUTH_FAILURE": 1}, Drops: 0,
					LastError: "Invalid API key", LastFailureType: "AUTH_FAILURE", LastConnectTime: ptr(0.00421),
					LastHeartbeatRTT: ptr(0.0012), MeanHeartbeatRTT: 0.001},
				CircuitBreaker: messages.BreakerReport{State: messages.BreakerClosed}},
			want: map[string]string{
				"Tunnel": "default", "State": "AUTHENTICATED", "Uptime": "1m2s",
				"Success rate": "75.0% (3 of 4 attempts)", "Consecutive failures": "0", "Last success": "1m2s",
				"Connect time": "4.2ms", "Heartbeat RTT": "1.2ms (mean 1ms)", "Circuit breaker": "closed, opened 0 times",
				"Last error": "AUTH_FAILURE: Invalid API key", "AUTH_FAILURE": "1", "NETWORK_ERROR": "0",
				"CONNECTION_REFUSED": "0", "TIMEOUT": "0", "PROTOCOL_ERROR": "0", "UNKNOWN": "0",
			},
		},
		{
			name: "breaker open, never connected",
			status: messages.Status{State: messages.CircuitBreaker, Tunnel: "tts",
				Health: messages.Health{TotalAttempts: 5, ConsecutiveFailures: 5,
					FailureTypes: map[string]int{"CONNECTION_REFUSED": 5}, LastFailureType: "CONNECTION_REFUSED",
					LastError: "dial tcp 127.0.0.1:1: connect: connection refused"},
				CircuitBreaker: messages.BreakerReport{Active: true, State: messages.BreakerOpen, RecoveryIn: 250.2, Openings: 1}},
			want: map[string]string{
				"State": "CIRCUIT_BREAKER", "Uptime": "not connected", "Success rate": "0.0% (0 of 5 attempts)",
				"Consecutive failures": "5", "Last success": "never", "Heartbeat RTT": "-", "Connect time": "-",
				"Circuit breaker":    "open, opened 1 times, trial in 4m10s",
				"Last error":         "CONNECTION_REFUSED: dial tcp 127.0.0.1:1: connect: connection refused",
				"CONNECTION_REFUSED": "5",
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			srv := httptest.NewServer(httpapi.NewHandler(httpapi.Config{Status: fixedStatus(tc.status)}))
			defer srv.Close()
			var stdout, stderr bytes.Buffer
			addr := strings.TrimPrefix(srv.URL, "http://")
			if code := run([]string{"status", "-addr", addr}, env(nil), &stdout, &stderr); code != 0 {
				t.Fatalf("exit %d: %s", code, stderr.String())
			}
			got := rows(stdout.String())
			for name, want := range tc.want {
				if got[name] != want {
					t.Errorf("%s = %q, want %q", name, got[name], want)
				}
			}
		})
	}
}

// With two connections: the aggregate as before, how many are ready, and
// one row per connection.
func TestStatusCommandConnections(t *testing.T) {
	up := messages.Health{SuccessRate: 1, TotalAttempts: 3, Successes: 3, Uptime: ptr(30), FailureTypes: map[string]int{}}
	down := messages.Health{TotalAttempts: 6, ConsecutiveFailures: 5, FailureTypes: map[string]int{"CONNECTION_REFUSED": 6},
		LastFailureType: "CONNECTION_REFUSED", LastError: "dial tcp 10.0.0.2:443: connect: connection refused"}
	status := messages.Status{
		State: messages.Authenticated, Connected: true, Tunnel: "tts", ReadyConnections: 1,
		Health: messages.Health{SuccessRate: 1.0 / 3, TotalAttempts: 9, Successes: 3, ConsecutiveFailures: 5, Uptime: ptr(30),
			FailureTypes: map[string]int{"CONNECTION_REFUSED": 6}, LastFailureType: "CONNECTION_REFUSED", LastError: down.LastError},
		CircuitBreaker: messages.BreakerReport{State: messages.BreakerClosed, Openings: 1},
		Connections: []messages.ConnectionStatus{
			{Index: 0, RelayURL: "wss://relay-a.example/tunnel", State: messages.Authenticated, Connected: true, Health: up,
				CircuitBreaker: messages.BreakerReport{State: messages.BreakerClosed}},
			{Index: 1, RelayURL: "wss://user:xxxxx@relay-b.example/tunnel", State: messages.CircuitBreaker, Health: down,
				CircuitBreaker: messages.BreakerReport{Active: true, State: messages.BreakerOpen, RecoveryIn: 250.2, Openings: 1}},
		},
	}
	srv := httptest.NewServer(httpapi.NewHandler(httpapi.Config{Status: fixedStatus(status)}))
	defer srv.Close()
	var stdout, stderr bytes.Buffer
	if code := run([]string{"status", "-addr", strings.TrimPrefix(srv.URL, "http://")}, env(nil), &stdout, &stderr); code != 0 {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	out := stdout.String()
	got := rows(out)
	for name, want := range map[string]string{
		"Tunnel": "tts", "State": "AUTHENTICATED", "Connections": "1 of 2 ready", "Success rate": "33.3% (3 of 9 attempts)",
		"Consecutive failures": "5", "Circuit breaker": "closed, opened 1 times", "CONNECTION_REFUSED": "6",
	} {
		if got[name] != want {
			t.Errorf("%s = %q, want %q", name, got[name], want)
		}
	}
	want := [][]string{
		{"INDEX", "RELAY", "STATE", "CONNECTED", "ATTEMPTS", "SUCCESSES", "CONSECUTIVE FAILURES", "BREAKER", "LAST ERROR"},
		{"0", "wss://relay-a.example/tunnel", "AUTHENTICATED", "yes", "3", "3", "0", "closed", "none"},
		{"1", "wss://user:xxxxx@relay-b.example/tunnel", "CIRCUIT_BREAKER", "no", "6", "0", "5", "open, trial in 4m10s",
			"CONNECTION_REFUSED: dial tcp 10.0.0.2:443: connect: connection refused"},
	}
	table := connectionRows(out)
	if !slices.EqualFunc(table, want, slices.Equal) {
		t.Errorf("connections table\n got %q\nwant %q\n%s", table, want, out)
	}
}

// A status without connections (one connection's own) prints no
// connections table.
func TestStatusCommandWithoutConnections(t *testing.T) {
	srv := httptest.NewServer(httpapi.NewHandler(httpapi.Config{Status: fixedStatus{State: messages.Connecting}}))
	defer srv.Close()
	var stdout, stderr bytes.Buffer
	if code := run([]string{"status", "-addr", strings.TrimPrefix(srv.URL, "http://")}, env(nil), &stdout, &stderr); code != 0 {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	if _, ok := rows(stdout.String())["Connections"]; ok || connectionRows(stdout.String()) != nil {
		t.Errorf("connections shown for a status without any:\n%s", stdout.String())
	}
}

func TestStatusCommandAddressFromEnv(t *testing.T) {
	srv := httptest.NewServer(httpapi.NewHandler(httpapi.Config{Status: fixedStatus{State: messages.Connecting}}))
	defer srv.Close()
	var stdout, stderr bytes.Buffer
	listen := map[string]string{"TUNNEL_LISTEN": strings.TrimPrefix(srv.URL, "http://")}
	if code := run([]string{"status"}, env(listen), &stdout, &stderr); code != 0 {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	if got := rows(stdout.String())["State"]; got != "CONNECTING" {
		t.Errorf("State = %q", got)
	}
}

func TestStatusCommandFailures(t *testing.T) {
	down := httptest.NewServer(nil)
	down.Close()
	notFound := httptest.NewServer(http.NotFoundHandler())
	defer notFound.Close()
	for _, url := range []string{down.URL, notFound.URL} {
		var stdout, stderr bytes.Buffer
		if code := run([]string{"status", "-addr", strings.TrimPrefix(url, "http://")}, env(nil), &stdout, &stderr); code != 1 {
			t.Errorf("status of %s exits %d, want 1", url, code)
		}
		if !strings.HasPrefix(stderr.String(), "tunnel-supervisor status: ") {
			t.Errorf("stderr %q", stderr.String())
		}
	}
}
