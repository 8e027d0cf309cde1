package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"
	"unicode/utf8"

	"github.com/enhanced-tunnel/tunnel/messages"
)

// statusView is the part of GET /status the status command prints. It is
// decoded from the JSON on its own terms, as any client of the endpoint
// would, with the state names as strings.
type statusView struct {
	State            string           `json:"state"`
	Connected        bool             `json:"connected"`
	Tunnel           string           `json:"tunnel"`
	Health           healthView       `json:"health"`
	CircuitBreaker   breakerView      `json:"circuit_breaker"`
	ReadyConnections int              `json:"ready_connections"`
	Connections      []connectionView `json:"connections"`
}

// connectionView is one connection's part of the status.
type connectionView struct {
	Index          int         `json:"index"`
	RelayURL       string      `json:"relay_url"`
	State          string      `json:"state"`
	Connected      bool        `json:"connected"`
	Health         healthView  `json:"health"`
	CircuitBreaker breakerView `json:"circuit_breaker"`
}

type healthView struct {
	SuccessRate          float64        `json:"success_rate"`
	TotalAttempts        int            `json:"total_attempts"`
	Successes            int            `json:"successes"`
	ConsecutiveFailures  int            `json:"consecutive_failures"`
	TimeSinceLastSuccess *float64       `json:"time_since_last_success"`
	FailureTypes         map[string]int `json:"failure_types"`
	LastError            string         `json:"last_error"`
	LastFailureType      string         `json:"last_failure_type"`
	Uptime               *float64       `json:"uptime"`
	Drops                int            `json:"drops"`
	LastConnectTime      *float64       `json:"last_connect_time"`
	LastHeartbeatRTT     *float64       `json:"last_heartbeat_rtt"`
	MeanHeartbeatRTT     float64        `json:"mean_heartbeat_rtt"`
}

type breakerView struct {
	Active     bool    `json:"active"`
	RecoveryIn float64 `json:"recovery_in"`
	State      string  `json:"state"`
	Openings   int     `json:"openings"`
}

// statusCommand is `tunnel-supervisor status [-addr host:port] [-watch
// [-interval 1s]]`.
func statusCommand(args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("tunnel-supervisor status", flag.ContinueOnError)
	fs.SetOutput(stderr)
	def := getenv(envName("listen"))
	if def == "" {
		def = defaultListen
	}
	addr := fs.String("addr", def, "address of the supervisor's HTTP endpoints (env "+envName("listen")+")")
	watch := fs.Bool("watch", false, "redraw the status in place every -interval until interrupted (SIGINT, SIGTERM)")
	interval := fs.Duration("interval", time.Second, "time between redraws with -watch")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if *watch {
		if *interval <= 0 {
			fmt.Fprintf(stderr, "tunnel-supervisor status: -interval must be positive, got %v\n", *interval)
			return 2
		}
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		defer stop()
		size := func() (int, int, bool) { return 0, 0, false }
		if f, ok := stdout.(*os.File); ok {
			size = func() (int, int, bool) { return terminalSize(f) }
		}
		watchStatus(ctx, "http://"+*addr+"/status", *interval, stdout, size)
		return 0
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s, err := fetchStatus(ctx, "http://"+*addr+"/status")
	if err != nil {
		fmt.Fprintf(stderr, "tunnel-supervisor status: %v\n", err)
		return 1
	}
	printStatus(stdout, s)
	return 0
}

// ANSI sequences of the watch.
const (
	ansiHome       = "\x1b[H"    // cursor to the top left corner
	ansiClear      = "\x1b[2J"   // the whole screen
	ansiClearLine  = "\x1b[K"    // from the cursor to the end of its line
	ansiClearBelow = "\x1b[J"    // from the cursor to the end of the screen
	ansiHideCursor = "\x1b[?25l" // no cursor jumping about while drawing
	ansiShowCursor = "\x1b[?25h"
)

// watchStatus draws the status at url every interval, in place: each frame
// goes over the last one from the top left corner, each line clearing the
// rest of itself and the frame what is below it, in one write, so that
// nothing flickers. A status that cannot be read draws an error line, and
// the next tick tries again. It returns when ctx ends (the signal), with
// the cursor shown again below the last frame. size, when it knows the
// terminal's, clips the lines to its width and the frame to its height
// (a frame that scrolled the screen could not be drawn over).
func watchStatus(ctx context.Context, url string, interval time.Duration, out io.Writer, size func() (cols, rows int, ok bool)) {
	_, _ = io.WriteString(out, ansiHideCursor+ansiClear+ansiHome)
	defer func() { _, _ = io.WriteString(out, ansiShowCursor+"\n") }()
	tick := time.NewTicker(interval)
	defer tick.Stop()
	var lastOK time.Time
	for {
		fetchCtx, cancel := context.WithTimeout(ctx, min(interval, 5*time.Second)+time.Second)
		s, err := fetchStatus(fetchCtx, url)
		cancel()
		if ctx.Err() != nil {
			return
		}
		var frame strings.Builder
		now := time.Now()
		fmt.Fprintf(&frame, "tunnel-supervisor status  %s  every %v  %s\n\n", url, interval, now.Format("15:04:05"))
		if err != nil {
			since := "never reached"
			if !lastOK.IsZero() {
				since = "last read " + now.Sub(lastOK).Round(time.Second).String() + " ago"
			}
			fmt.Fprintf(&frame, "error: %v (%s; retrying every %v)\n", err, since, interval)
		} else {
			lastOK = now
			printStatus(&frame, s)
		}
		cols, rows, known := size()
		_, _ = io.WriteString(out, drawFrame(frame.String(), cols, rows, known))
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// drawFrame is text as one redraw from the top left corner: each line
// clipped to cols-1 (a line that fills its row leaves the cursor waiting to
// wrap, where the clear would take its last character) and followed by a
// clear to its end, at most rows-1 lines
// (the last row stays free, so that the screen never scrolls), then a
// clear of what is below.
func drawFrame(text string, cols, rows int, known bool) string {
	lines := strings.Split(strings.TrimRight(text, "\n"), "\n")
	if known && rows > 1 && len(lines) > rows-1 {
		lines = lines[:rows-1]
	}
	var b strings.Builder
	b.WriteString(ansiHome)
	for i, line := range lines {
		if known && cols > 1 && utf8.RuneCountInString(line) > cols-1 {
			line = string([]rune(line)[:cols-1])
		}
		if i > 0 {
			b.WriteString("\r\n")
		}
		b.WriteString(line)
		b.WriteString(ansiClearLine)
	}
	b.WriteString(ansiClearBelow)
	return b.String()
}

func fetchStatus(ctx context.Context, url string) (*statusView, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	var s statusView
	if err := json.NewDecoder(resp.Body).Decode(&s); err != nil {
		return nil, fmt.Errorf("GET %s: %w", url, err)
	}
	return &s, nil
}

// printStatus writes s as a two-column table of the tunnel as a whole
// and, when the status lists its connections, a table of one row per
// connection below.
func printStatus(w io.Writer, s *statusView) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	row := func(name, format string, args ...any) {
		fmt.Fprintf(tw, "%s\t%s\n", name, fmt.Sprintf(format, args...))
	}
	h := s.Health
	row("Tunnel", "%s", s.Tunnel)
	row("State", "%s", s.State)
	if len(s.Connections) > 0 {
		row("Connections", "%d of %d ready", s.ReadyConnections, len(s.Connections))
	}
	row("Uptime", "%s", optionalSeconds(h.Uptime, time.Second, "not connected"))
	row("Success rate", "%.1f%% (%d of %d attempts)", 100*h.SuccessRate, h.Successes, h.TotalAttempts)
	row("Consecutive failures", "%d", h.ConsecutiveFailures)
	row("Last success", "%s", optionalSeconds(h.TimeSinceLastSuccess, time.Second, "never"))
	row("Drops", "%d", h.Drops)
	row("Connect time", "%s", optionalSeconds(h.LastConnectTime, 100*time.Microsecond, "-"))
	rtt := optionalSeconds(h.LastHeartbeatRTT, 100*time.Microsecond, "-")
	if h.LastHeartbeatRTT != nil {
		rtt += " (mean " + seconds(h.MeanHeartbeatRTT, 100*time.Microsecond) + ")"
	}
	row("Heartbeat RTT", "%s", rtt)
	row("Circuit breaker", "%s", breakerText(s.CircuitBreaker, true))
	row("Last error", "%s", lastError(h))
	row("Failures by type", "")
	for _, ft := range messages.FailureTypes {
		row("  "+ft.String(), "%d", h.FailureTypes[ft.String()])
	}
	tw.Flush()
	if len(s.Connections) == 0 {
		return
	}

	fmt.Fprintln(w)
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "INDEX\tRELAY\tSTATE\tCONNECTED\tATTEMPTS\tSUCCESSES\tCONSECUTIVE FAILURES\tBREAKER\tLAST ERROR")
	for _, c := range s.Connections {
		connected := "no"
		if c.Connected {
			connected = "yes"
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%d\t%d\t%d\t%s\t%s\n", c.Index, c.RelayURL, c.State, connected,
			c.Health.TotalAttempts, c.Health.Successes, c.Health.ConsecutiveFailures, breakerText(c.CircuitBreaker, false), lastError(c.Health))
	}
	tw.Flush()
}

// breakerText is the breaker's state, with the time to its trial while it
// is open, and how often it opened when withOpenings.
func breakerText(b breakerView, withOpenings bool) string {
	text := b.State
	if withOpenings {
		text += fmt.Sprintf(", opened %d times", b.Openings)
	}
	if b.Active {
		text += ", trial in " + seconds(b.RecoveryIn, time.Second)
	}
	return text
}

// lastError is the last failure's type and error, or "none".
func lastError(h healthView) string {
	if h.LastFailureType == "" {
		return "none"
	}
	if h.LastError == "" {
		return h.LastFailureType
	}
	return h.LastFailureType + ": " + h.LastError
}

func seconds(s float64, round time.Duration) string {
	return time.Duration(s * float64(time.Second)).Round(round).String()
}

func optionalSeconds(s *float64, round time.Duration, none string) string {
	if s == nil {
		return none
	}
	return seconds(*s, round)
}
