package oort

import (
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Log levels, most verbose first.
const (
	levelDebug int32 = iota
	levelInfo
	levelWarn
	levelError
	levelOff
)

var levelNames = [...]string{"DEBUG", " INFO", " WARN", "ERROR"}

var (
	logMu    sync.Mutex
	logOut   io.Writer = os.Stderr
	logLevel atomic.Int32
)

func init() { logLevel.Store(parseLogLevel(os.Getenv("OORT_LOG"))) }

// parseLogLevel reads the level out of OORT_LOG, which the supervisor passes
// on as a Rust `tracing` filter such as "info" or "warn,oort=debug". The Go SDK
// has no targets: it takes the most verbose level the filter names anywhere.
// The default is info.
func parseLogLevel(filter string) int32 {
	level := int32(-1)
	for _, part := range strings.Split(filter, ",") {
		if i := strings.LastIndexByte(part, '='); i >= 0 {
			part = part[i+1:]
		}
		var l int32
		switch strings.ToLower(strings.TrimSpace(part)) {
		case "trace", "debug":
			l = levelDebug
		case "info":
			l = levelInfo
		case "warn", "warning":
			l = levelWarn
		case "error":
			l = levelError
		case "off":
			l = levelOff
		default:
			continue
		}
		if level < 0 || l < level {
			level = l
		}
	}
	if level < 0 {
		return levelInfo
	}
	return level
}

// logger writes "<RFC 3339 UTC time> <LEVEL> <prefix><message>" lines: the
// level sits within the first 48 characters, where the supervisor looks for
// it, and there are no colours.
type logger struct {
	prefix string
}

// Log returns the process-wide logger, for messages that belong to no
// instance. Extensions should prefer ctx.GetLogger(), whose lines carry the
// rule and instance ids.
func Log() Logger { return processLogger }

var processLogger = &logger{}

func (l *logger) log(level int32, msg string) {
	if level < logLevel.Load() {
		return
	}
	ts := time.Now().UTC().Format("2006-01-02T15:04:05.000000Z")
	head := ts + " " + levelNames[level] + " " + l.prefix
	msg = strings.TrimRight(msg, "\n")
	var b strings.Builder
	// Every line of a multi-line message carries the head, so that the
	// supervisor logs each of them at the right level.
	for _, line := range strings.Split(msg, "\n") {
		b.WriteString(head)
		b.WriteString(line)
		b.WriteByte('\n')
	}
	logMu.Lock()
	defer logMu.Unlock()
	_, _ = io.WriteString(logOut, b.String())
}

func (l *logger) Debug(args ...any)   { l.log(levelDebug, fmt.Sprint(args...)) }
func (l *logger) Info(args ...any)    { l.log(levelInfo, fmt.Sprint(args...)) }
func (l *logger) Warn(args ...any)    { l.log(levelWarn, fmt.Sprint(args...)) }
func (l *logger) Error(args ...any)   { l.log(levelError, fmt.Sprint(args...)) }
func (l *logger) Debugln(args ...any) { l.log(levelDebug, fmt.Sprintln(args...)) }
func (l *logger) Infoln(args ...any)  { l.log(levelInfo, fmt.Sprintln(args...)) }
func (l *logger) Warnln(args ...any)  { l.log(levelWarn, fmt.Sprintln(args...)) }
func (l *logger) Errorln(args ...any) { l.log(levelError, fmt.Sprintln(args...)) }
func (l *logger) Debugf(format string, args ...any) {
	l.log(levelDebug, fmt.Sprintf(format, args...))
}
func (l *logger) Infof(format string, args ...any) { l.log(levelInfo, fmt.Sprintf(format, args...)) }
func (l *logger) Warnf(format string, args ...any) { l.log(levelWarn, fmt.Sprintf(format, args...)) }
func (l *logger) Errorf(format string, args ...any) {
	l.log(levelError, fmt.Sprintf(format, args...))
}
