package benchrig

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// readyPoll is how often a readiness check looks again.
const readyPoll = 20 * time.Millisecond

// child is one process of the rig.
type child struct {
	name    string
	cmd     *exec.Cmd
	logPath string
	done    chan struct{} // closed once the process has exited
	waitErr error         // its exit status, once done is closed
}

func (c *child) pid() int { return c.cmd.Process.Pid }

// exitError says that the process ended before it was ready.
func (c *child) exitError() error {
	return fmt.Errorf("%s exited early (%v); its log: %s", c.name, c.waitErr, c.logPath)
}

// procs starts the rig's processes and kills them all at the end.
type procs struct {
	dir      string // where the logs go
	children []*child
}

// childEnv is this process's environment without the variables that
// configure the relay (RELAY_*, AUTH_TOKEN) and the supervisor (TUNNEL_*),
// so that a shell's settings cannot change what is measured.
func childEnv(extra ...string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "RELAY_") || strings.HasPrefix(kv, "AUTH_TOKEN=") || strings.HasPrefix(kv, "TUNNEL_") {
			continue
		}
		env = append(env, kv)
	}
	return append(env, extra...)
}

// start runs bin with args, its stderr into a log file of its own. With
// announce, the process's first line on stdout is returned (the address of
// the bench's own servers), waited for up to timeout.
func (p *procs) start(name, bin string, args, env []string, announce bool, timeout time.Duration) (*child, string, error) {
	logPath := filepath.Join(p.dir, name+".log")
	logFile, err := os.Create(logPath)
	if err != nil {
		return nil, "", err
	}
	defer logFile.Close() // the child holds its own copy
	cmd := exec.Command(bin, args...)
	cmd.Env = env
	cmd.Stderr = logFile
	// A group of its own keeps a terminal's ^C from reaching the children
	// directly: the bench ends them itself, after the run it was in. The
	// death signal ends them should the bench be killed outright.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	var stdout *os.File
	if announce {
		r, w, err := os.Pipe()
		if err != nil {
			return nil, "", err
		}
		defer r.Close()
		cmd.Stdout = w
		defer w.Close() // after Start the child holds the write end alone
		stdout = r
	}
	if err := cmd.Start(); err != nil {
		return nil, "", fmt.Errorf("starting %s: %w", name, err)
	}
	c := &child{name: name, cmd: cmd, logPath: logPath, done: make(chan struct{})}
	p.children = append(p.children, c)
	go func() {
		c.waitErr = cmd.Wait()
		close(c.done)
	}()
	if !announce {
		return c, "", nil
	}
	line := make(chan string, 1)
	go func() {
		s, _ := bufio.NewReader(stdout).ReadString('\n')
		line <- strings.TrimSpace(s)
	}()
	select {
	case s := <-line:
		if s != "" {
			return c, s, nil
		}
		select { // no line: the child is ending
		case <-c.done:
			return nil, "", c.exitError()
		case <-time.After(timeout):
			return nil, "", fmt.Errorf("%s closed its stdout without an address; its log: %s", name, logPath)
		}
	case <-time.After(timeout):
		return nil, "", fmt.Errorf("%s did not print its address within %v; its log: %s", name, timeout, logPath)
	}
}

// stop kills c and waits for it to end.
func (p *procs) stop(c *child) {
	select {
	case <-c.done: // reaped: its pid may be another process's by now
	default:
		// The group, in case the child started children of its own.
		_ = syscall.Kill(-c.pid(), syscall.SIGKILL)
		<-c.done
	}
}

// stopAll ends every child still running.
func (p *procs) stopAll() {
	for _, c := range p.children {
		p.stop(c)
	}
	p.children = nil
}

// waitRelayAddr reads the relay's public address from its JSON log line
// "Relay listening", since it listens on port 0.
func waitRelayAddr(ctx context.Context, c *child, timeout time.Duration) (string, error) {
	deadline := time.Now().Add(timeout)
	for {
		if b, err := os.ReadFile(c.logPath); err == nil {
			for line := range bytes.Lines(b) {
				var entry struct {
					Msg  string `json:"msg"`
					Addr string `json:"addr"`
				}
				if json.Unmarshal(line, &entry) == nil && entry.Msg == "Relay listening" && entry.Addr != "" {
					return entry.Addr, nil
				}
			}
		}
		if time.Now().After(deadline) {
			return "", fmt.Errorf("%s did not log \"Relay listening\" within %v; its log: %s", c.name, timeout, c.logPath)
		}
		if err := pause(ctx, c, readyPoll); err != nil {
			return "", err
		}
	}
}

// waitUntil calls ready until it returns nil, c exits, ctx ends or timeout
// passes, whichever comes first.
func waitUntil(ctx context.Context, c *child, timeout time.Duration, what string, ready func(context.Context) error) error {
	deadline := time.Now().Add(timeout)
	for {
		attemptCtx, cancel := context.WithDeadline(ctx, deadline)
		err := ready(attemptCtx)
		cancel()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not ready within %v (%s: %v); its log: %s", c.name, timeout, what, err, c.logPath)
		}
		if err := pause(ctx, c, readyPoll); err != nil {
			return err
		}
	}
}

// pause waits d, unless c exits or ctx ends first.
func pause(ctx context.Context, c *child, d time.Duration) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-c.done:
		return c.exitError()
	case <-time.After(d):
		return nil
	}
}

// usage is what a process has used so far.
type usage struct {
	cpu    time.Duration // utime+stime
	writes int64         // write system calls
}

// clockTick is the unit of /proc/PID/stat's times, from `getconf CLK_TCK`;
// 100 Hz, Linux's USER_HZ on every common architecture, if that fails.
var clockTick = func() time.Duration {
	out, err := exec.Command("getconf", "CLK_TCK").Output()
	if hz, perr := strconv.Atoi(strings.TrimSpace(string(out))); err == nil && perr == nil && hz > 0 {
		return time.Second / time.Duration(hz)
	}
	return 10 * time.Millisecond
}()

// readUsage reads the CPU time (utime+stime, all threads) of pid from
// /proc/PID/stat and its write system calls (syscw) from /proc/PID/io.
func readUsage(pid int) (usage, error) {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return usage{}, err
	}
	// The command name, field 2, may hold spaces: count from its ')'.
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return usage{}, fmt.Errorf("/proc/%d/stat: no ')'", pid)
	}
	fields := strings.Fields(string(stat[i+1:])) // fields[0] is field 3
	if len(fields) < 13 {
		return usage{}, fmt.Errorf("/proc/%d/stat: %d fields", pid, len(fields)+2)
	}
	utime, err1 := strconv.ParseInt(fields[14-3], 10, 64)
	stime, err2 := strconv.ParseInt(fields[15-3], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return usage{}, fmt.Errorf("/proc/%d/stat: %w", pid, err)
	}
	writes, err := procField(fmt.Sprintf("/proc/%d/io", pid), "syscw:")
	if err != nil {
		return usage{}, err
	}
	return usage{cpu: time.Duration(utime+stime) * clockTick, writes: writes}, nil
}

// readRSS reads the resident set (VmRSS) of pid, in bytes.
func readRSS(pid int) (int64, error) {
	kib, err := procField(fmt.Sprintf("/proc/%d/status", pid), "VmRSS:")
	return kib << 10, err
}

// procField reads the number after key in a /proc file of "key value"
// lines.
func procField(path, key string) (int64, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	for line := range strings.Lines(string(b)) {
		if rest, ok := strings.CutPrefix(line, key); ok {
			f := strings.Fields(rest)
			if len(f) == 0 {
				break
			}
			return strconv.ParseInt(f[0], 10, 64)
		}
	}
	return 0, fmt.Errorf("%s: no %s", path, key)
}
