package relay

import (
	"cmp"
	"context"
	"embed"
	"encoding/json"
	"io/fs"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/enhanced-tunnel/tunnel/messages/relaymsg"
)

// The dashboard: a page at GET / of the admin listener that shows the
// relay's tunnels, their sessions and figures, live. Its assets are
// embedded (no CDN, no external font); its data is a snapshot of the
// router's sessions (relaymsg.ListSessions) and of the relay's own metrics,
// read through their collectors, at most once a second however many pages
// watch it.

//go:embed dashboard
var dashboardFiles embed.FS

const (
	// dashboardPeriod is how often the page's data changes: one snapshot
	// a second, one server-sent event a second.
	dashboardPeriod = time.Second
	// dashboardCSP keeps the page to its own assets: no inline script or
	// style, nothing from elsewhere, not framed.
	dashboardCSP = "default-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
	// dashboardLookups bounds the directory questions asked at once for a
	// snapshot in a fleet.
	dashboardLookups = 16
)

// dashboardView is the JSON of GET /api/tunnels and of each event of GET
// /events. Bytes are relay-wide: the relay counts them per connection, not
// per tunnel.
type dashboardView struct {
	Time              time.Time         `json:"time"`
	Cluster           string            `json:"cluster,omitempty"`
	Node              string            `json:"node,omitempty"`
	Sessions          int               `json:"sessions"`
	BytesIn           float64           `json:"bytes_in"`
	BytesOut          float64           `json:"bytes_out"`
	BytesInPerSecond  float64           `json:"bytes_in_per_second"`
	BytesOutPerSecond float64           `json:"bytes_out_per_second"`
	Tunnels           []dashboardTunnel `json:"tunnels"`
}

type dashboardTunnel struct {
	Name              string             `json:"name"`
	Sessions          int                `json:"sessions"`
	SessionList       []dashboardSession `json:"session_list"`
	Nodes             []dashboardNode    `json:"nodes,omitempty"` // in a fleet: the directory's routes
	FleetError        string             `json:"fleet_error,omitempty"`
	Held              int                `json:"held"`
	InFlight          float64            `json:"in_flight"`
	Requests          float64            `json:"requests"`
	RequestsPerSecond float64            `json:"requests_per_second"`
	Errors4xx         float64            `json:"errors_4xx"`
	Errors5xx         float64            `json:"errors_5xx"`
	// LastSeen is now while the tunnel has a session, else when its last
	// session ended; null when it never had one.
	LastSeen *time.Time `json:"last_seen"`
}

type dashboardSession struct {
	ID       string    `json:"id"`
	Instance string    `json:"instance"`
	Index    int       `json:"index"`
	InFlight int       `json:"in_flight"`
	Since    time.Time `json:"since"`
}

type dashboardNode struct {
	Node     string `json:"node"`
	Sessions int    `json:"sessions"`
	Self     bool   `json:"self,omitempty"`
}

// dashboard keeps the last snapshot, and the totals it was made of so that
// the next one can tell rates.
type dashboard struct {
	r *Relay

	mu       sync.Mutex
	last     *dashboardView
	requests map[string]float64 // total requests per tunnel at last
}

// dashboardRoutes adds the dashboard's endpoints to the admin mux.
func (r *Relay) dashboardRoutes(mux *http.ServeMux) {
	d := &dashboard{r: r}
	assets, err := fs.Sub(dashboardFiles, "dashboard")
	if err != nil {
		panic(err) // the embedded directory is there, or this does not build
	}
	files := http.FileServerFS(assets)
	mux.Handle("GET /{$}", secured(func(w http.ResponseWriter, req *http.Request) {
		w.Header().Set("Cache-Control", "no-store")
		http.ServeFileFS(w, req, assets, "index.html")
	}))
	mux.Handle("GET /dashboard/", secured(http.StripPrefix("/dashboard", files).ServeHTTP))
	mux.Handle("GET /api/tunnels", secured(d.serveTunnels))
	mux.Handle("GET /events", secured(d.serveEvents))
}

// secured sets the headers every dashboard answer carries.
func secured(h http.HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		hd := w.Header()
		hd.Set("Content-Security-Policy", dashboardCSP)
		hd.Set("X-Content-Type-Options", "nosniff")
		hd.Set("X-Frame-Options", "DENY")
		hd.Set("Referrer-Policy", "no-referrer")
		h(w, req)
	})
}

func (d *dashboard) serveTunnels(w http.ResponseWriter, req *http.Request) {
	v, err := d.snapshot(req.Context())
	if err != nil {
		writeError(w, http.StatusServiceUnavailable, "relay not responding")
		return
	}
	writeJSON(w, http.StatusOK, v)
}

// serveEvents streams a snapshot a second as server-sent events, until the
// page goes away or the relay closes (an open page must not hold the
// admin server's shutdown up).
func (d *dashboard) serveEvents(w http.ResponseWriter, req *http.Request) {
	rc := http.NewResponseController(w)
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	// The browser reconnects after 2 s when the stream breaks.
	if _, err := w.Write([]byte("retry: 2000\n\n")); err != nil {
		return
	}
	tick := time.NewTicker(dashboardPeriod)
	defer tick.Stop()
	for {
		v, err := d.snapshot(req.Context())
		if err == nil {
			data, _ := json.Marshal(v)
			if _, err := w.Write(append(append([]byte("data: "), data...), '\n', '\n')); err != nil {
				return
			}
		} else if _, err := w.Write([]byte("event: failure\ndata: relay not responding\n\n")); err != nil {
			return
		}
		if rc.Flush() != nil {
			return
		}
		select {
		case <-tick.C:
		case <-req.Context().Done():
			return
		case <-d.r.draining:
			return
		}
	}
}

// snapshot is the relay's view now, or the one made less than a period
// ago (however many pages ask).
func (d *dashboard) snapshot(ctx context.Context) (*dashboardView, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	now := time.Now()
	if d.last != nil && now.Sub(d.last.Time) < dashboardPeriod*9/10 {
		return d.last, nil
	}
	list, err := ask[*relaymsg.Sessions](d.r, &relaymsg.ListSessions{})
	if err != nil {
		return nil, err
	}
	m := d.r.metrics
	v := &dashboardView{
		Time:     now,
		BytesIn:  counterValue(m.bytesIn),
		BytesOut: counterValue(m.bytesOut),
		Tunnels:  make([]dashboardTunnel, 0, len(list.Tunnels)),
	}
	requests := map[string]float64{}
	errs4, errs5 := map[string]float64{}, map[string]float64{}
	for _, dm := range collect(m.requests) {
		tunnel, code := label(dm, "tunnel"), label(dm, "code")
		n := dm.GetCounter().GetValue()
		requests[tunnel] += n
		if c, err := strconv.Atoi(code); err == nil {
			switch {
			case c >= 400 && c < 500:
				errs4[tunnel] += n
			case c >= 500:
				errs5[tunnel] += n
			}
		}
	}
	inFlight := map[string]float64{}
	for _, dm := range collect(m.inFlight) {
		inFlight[label(dm, "tunnel")] = dm.GetGauge().GetValue()
	}
	var elapsed float64
	if d.last != nil {
		elapsed = now.Sub(d.last.Time).Seconds()
		v.BytesInPerSecond = perSecond(v.BytesIn, d.last.BytesIn, elapsed)
		v.BytesOutPerSecond = perSecond(v.BytesOut, d.last.BytesOut, elapsed)
	}
	for _, ts := range list.Tunnels {
		t := dashboardTunnel{
			Name:        ts.Name,
			Sessions:    len(ts.Sessions),
			SessionList: make([]dashboardSession, 0, len(ts.Sessions)),
			Held:        ts.Held,
			InFlight:    inFlight[ts.Name],
			Requests:    requests[ts.Name],
			Errors4xx:   errs4[ts.Name],
			Errors5xx:   errs5[ts.Name],
		}
		for _, s := range ts.Sessions {
			t.SessionList = append(t.SessionList, dashboardSession{
				ID: s.ID, Instance: s.Instance, Index: s.Index, InFlight: s.InFlight, Since: s.Since,
			})
		}
		if prev, ok := d.requests[ts.Name]; ok {
			t.RequestsPerSecond = perSecond(t.Requests, prev, elapsed)
		}
		switch {
		case t.Sessions > 0:
			seen := now
			t.LastSeen = &seen
		case !ts.LastSeen.IsZero():
			seen := ts.LastSeen
			t.LastSeen = &seen
		}
		v.Sessions += t.Sessions
		v.Tunnels = append(v.Tunnels, t)
	}
	if d.r.fleet != nil {
		d.fleetView(ctx, v)
	}
	d.last, d.requests = v, requests
	return v, nil
}

// fleetView adds the fleet's name, this node, and each tunnel's nodes as
// the directory knows them (as GET /fleet?tunnel=NAME does).
func (d *dashboard) fleetView(ctx context.Context, v *dashboardView) {
	f := d.r.fleet.fleet
	v.Cluster, v.Node = d.r.cfg.Fleet.Name, f.Self()
	ctx, cancel := context.WithTimeout(ctx, fleetLookupTimeout)
	defer cancel()
	sem := make(chan struct{}, dashboardLookups)
	var wg sync.WaitGroup
	for i := range v.Tunnels {
		t := &v.Tunnels[i]
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			routes, err := f.Lookup(ctx, t.Name)
			if err != nil {
				t.FleetError = err.Error()
				return
			}
			for _, rt := range routes {
				t.Nodes = append(t.Nodes, dashboardNode{Node: rt.Node, Sessions: rt.Sessions, Self: rt.Node == v.Node})
			}
			slices.SortFunc(t.Nodes, func(a, b dashboardNode) int { return cmp.Compare(a.Node, b.Node) })
		}()
	}
	wg.Wait()
}

func perSecond(now, before, seconds float64) float64 {
	if seconds <= 0 || now < before {
		return 0
	}
	return (now - before) / seconds
}

// collect reads the current values of c's metrics.
func collect(c prometheus.Collector) []*dto.Metric {
	ch := make(chan prometheus.Metric, 64)
	go func() {
		c.Collect(ch)
		close(ch)
	}()
	var out []*dto.Metric
	for m := range ch {
		dm := &dto.Metric{}
		if m.Write(dm) == nil {
			out = append(out, dm)
		}
	}
	return out
}

func counterValue(c prometheus.Counter) float64 {
	dm := &dto.Metric{}
	if c.Write(dm) != nil {
		return 0
	}
	return dm.GetCounter().GetValue()
}

func label(m *dto.Metric, name string) string {
	for _, l := range m.GetLabel() {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}
