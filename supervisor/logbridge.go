package supervisor

import (
	"context"
	"io"
	"log/slog"

	"github.com/sirupsen/logrus"
)

// discardLogger is the logger of a Config without one.
func discardLogger() *logrus.Logger {
	l := logrus.New()
	l.SetOutput(io.Discard)
	return l
}

// slogToLogrus routes protoactor's log/slog output into the tunnel's logrus
// logger, so a host sees one log stream in one format. protoactor's Info is
// lifecycle chatter and goes to Debug.
type slogToLogrus struct {
	entry *logrus.Entry
}

func (h slogToLogrus) Enabled(_ context.Context, level slog.Level) bool {
	return h.entry.Logger.IsLevelEnabled(logrusLevel(level))
}

func (h slogToLogrus) Handle(_ context.Context, r slog.Record) error {
	fields := logrus.Fields{}
	r.Attrs(func(a slog.Attr) bool {
		fields[a.Key] = a.Value.String()
		return true
	})
	h.entry.WithFields(fields).Log(logrusLevel(r.Level), r.Message)
	return nil
}

func (h slogToLogrus) WithAttrs(attrs []slog.Attr) slog.Handler {
	fields := logrus.Fields{}
	for _, a := range attrs {
		fields[a.Key] = a.Value.String()
	}
	return slogToLogrus{entry: h.entry.WithFields(fields)}
}

func (h slogToLogrus) WithGroup(string) slog.Handler { return h }

func logrusLevel(l slog.Level) logrus.Level {
	switch {
	case l >= slog.LevelError:
		return logrus.ErrorLevel
	case l >= slog.LevelWarn:
		return logrus.WarnLevel
	default:
		return logrus.DebugLevel
	}
}
