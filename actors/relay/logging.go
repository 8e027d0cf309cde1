package relay

import (
	"context"
	"io"
	"log/slog"

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
