package relay

import (
	"context"
	"io"
	"log/slog"
	"maps"
	"sync"
	"time"

	"github.com/sirupsen/logrus"
)

// slogToLogrus carries protoactor's log/slog records into the relay's
// logrus logger, one level down (its info is our debug), so that the
// actor system's chatter stays out of an info log.
type slogToLogrus struct {
	entry *logrus.Entry
	group string
}

func newSlogLogger(l *logrus.Logger) *slog.Logger {
	if l == nil {
		return slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	return slog.New(&slogToLogrus{entry: l.WithField("actor", "protoactor")})
}

func level(l slog.Level) logrus.Level {
	switch {
	case l >= slog.LevelError:
		return logrus.ErrorLevel
	case l >= slog.LevelWarn:
		return logrus.WarnLevel
	default:
		return logrus.DebugLevel
	}
}

func (h *slogToLogrus) Enabled(_ context.Context, l slog.Level) bool {
	return h.entry.Logger.IsLevelEnabled(level(l))
}

func (h *slogToLogrus) Handle(_ context.Context, r slog.Record) error {
	fields := logrus.Fields{}
	r.Attrs(func(a slog.Attr) bool {
		h.add(fields, a)
		return true
	})
	h.entry.WithFields(fields).Log(level(r.Level), r.Message)
	return nil
}

func (h *slogToLogrus) add(fields logrus.Fields, a slog.Attr) {
	key := a.Key
	if h.group != "" {
		key = h.group + "." + key
	}
	// Resolve runs LogValue, which keeps secrets out (relaymsg.Authenticate).
	fields[key] = a.Value.Resolve().String()
}

func (h *slogToLogrus) WithAttrs(attrs []slog.Attr) slog.Handler {
	fields := logrus.Fields{}
	for _, a := range attrs {
		h.add(fields, a)
	}
	return &slogToLogrus{entry: h.entry.WithFields(fields), group: h.group}
}

func (h *slogToLogrus) WithGroup(name string) slog.Handler {
	if h.group != "" {
		name = h.group + "." + name
	}
	return &slogToLogrus{entry: h.entry, group: name}
}

// sampled returns the relay's logger: it writes where l writes, at l's
// level and in l's format, but at most perSecond lines of any one message
// (warnings and below) per second. The lines held back are counted, and the
// next line of that message that goes out says how many in its
// "suppressed" field. Messages are the relay's own constant texts, so the
// counts stay few. A nil l gives a logger that discards; perSecond 0 keeps
// every line. l itself is left as it is.
func sampled(l *logrus.Logger, perSecond int) *logrus.Logger {
	out := logrus.New()
	if l == nil {
		out.SetOutput(io.Discard)
		return out
	}
	out.SetOutput(l.Out)
	out.SetLevel(l.GetLevel())
	out.Hooks = l.Hooks
	out.ReportCaller = l.ReportCaller
	out.Formatter = l.Formatter
	if perSecond > 0 {
		out.Formatter = &sampler{inner: l.Formatter, perSecond: perSecond, windows: make(map[string]*window)}
	}
	return out
}

// sampler is the formatter of a sampled logger. logrus calls Format once
// per entry; an empty result writes nothing.
type sampler struct {
	inner     logrus.Formatter
	perSecond int
	mu        sync.Mutex
	windows   map[string]*window
}

// window counts the lines of one message in the current second.
type window struct {
	start      time.Time
	lines      int
	suppressed int
}

func (s *sampler) Format(e *logrus.Entry) ([]byte, error) {
	if e.Level <= logrus.ErrorLevel {
		return s.inner.Format(e)
	}
	s.mu.Lock()
	w := s.windows[e.Message]
	if w == nil {
		w = &window{}
		s.windows[e.Message] = w
	}
	// logrus stamps an entry before it formats it, outside its lock, so
	// entries can come a little out of order: only a gap of a second
	// either way opens a new window.
	if d := e.Time.Sub(w.start); d >= time.Second || d <= -time.Second {
		w.start, w.lines = e.Time, 0
	}
	if w.lines >= s.perSecond {
		w.suppressed++
		s.mu.Unlock()
		return nil, nil
	}
	w.lines++
	suppressed := w.suppressed
	w.suppressed = 0
	s.mu.Unlock()
	if suppressed > 0 {
		c := *e
		c.Data = maps.Clone(e.Data)
		c.Data["suppressed"] = suppressed
		return s.inner.Format(&c)
	}
	return s.inner.Format(e)
}
