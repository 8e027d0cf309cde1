// Package configfile reads the YAML config file of the binaries
// (tunnel-relay -config FILE, tunnel-supervisor -config FILE) into their
// flag sets, so that the flag package's own parsing and checks judge every
// value whatever its source.
//
// The file is one YAML mapping. Each key is the name of a flag (listen,
// max-body, hold-timeout) and its value a scalar, written as on the command
// line (15s, 1048576, true); a flag that takes a list (Spec.Lists) also
// takes a YAML sequence. Keys that are not flags (the relay's tunnels) are
// handed to Spec.Structured. An unknown key, a value of the wrong shape or
// one the flag refuses is an *Error naming the file, the line and the key,
// without the value when the flag holds a secret (Spec.Secret).
//
// Parse applies the sources in increasing precedence: the file, then the
// environment, then the command line; each Set overrides what a lower
// source set, and Sources tells which source set each flag.
package configfile

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"regexp"
	"slices"
	"strings"

	"gopkg.in/yaml.v3"
)

// Source is where a flag's value came from.
type Source int

const (
	// FromDefault: nothing set the flag.
	FromDefault Source = iota
	// FromFile: the config file.
	FromFile
	// FromEnv: the flag's environment variable.
	FromEnv
	// FromFlag: the command line.
	FromFlag
)

func (s Source) String() string {
	switch s {
	case FromFile:
		return "file"
	case FromEnv:
		return "env"
	case FromFlag:
		return "flag"
	}
	return "default"
}

// Sources maps the name of every flag that was set to the source that set
// it last (the one that won).
type Sources map[string]Source

// Error is a problem with one key of a config file.
type Error struct {
	File string // the path as given
	Line int    // 1-based; 0 when unknown
	Key  string // the key (a dotted path for nested ones: tunnels.api.rate); empty for the file as a whole
	Err  error
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(e.File)
	if e.Line > 0 {
		fmt.Fprintf(&b, ":%d", e.Line)
	}
	if e.Key != "" {
		b.WriteString(": ")
		b.WriteString(e.Key)
	}
	b.WriteString(": ")
	b.WriteString(e.Err.Error())
	return b.String()
}

func (e *Error) Unwrap() error { return e.Err }

// UsageError is a mistake on the command line (an unknown flag, an
// argument too many): the commands exit 2 on it, where a bad setting
// exits 1.
type UsageError struct{ Err error }

func (e *UsageError) Error() string { return e.Err.Error() }
func (e *UsageError) Unwrap() error { return e.Err }

// Usage wraps err as a *UsageError.
func Usage(err error) error { return &UsageError{err} }

// IsUsage says whether err is (or wraps) a *UsageError or flag.ErrHelp.
func IsUsage(err error) bool {
	var u *UsageError
	return errors.As(err, &u) || errors.Is(err, flag.ErrHelp)
}

// File is a parsed config file: its top-level mapping.
type File struct {
	Name string // the path as given, for errors
	root *yaml.Node
}

// Load reads and parses the file at path.
func Load(path string) (*File, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err // *fs.PathError names the file
	}
	return ParseYAML(path, data)
}

var yamlLine = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

// ParseYAML parses data, the text of the file name. An empty file is an
// empty mapping.
func ParseYAML(name string, data []byte) (*File, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		msg := err.Error()
		if m := yamlLine.FindStringSubmatch(msg); m != nil {
			return nil, fmt.Errorf("%s:%s: %s", name, m[1], m[2])
		}
		return nil, fmt.Errorf("%s: %s", name, strings.TrimPrefix(msg, "yaml: "))
	}
	f := &File{Name: name}
	if doc.Kind == 0 { // empty document
		f.root = &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map"}
		return f, nil
	}
	root := doc.Content[0]
	if root.Kind == yaml.ScalarNode && root.Tag == "!!null" {
		f.root = &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map"}
		return f, nil
	}
	if root.Kind != yaml.MappingNode {
		return nil, f.Errorf(root, "", "want a mapping of settings (key: value), got %s", Kind(root))
	}
	if err := f.checkDuplicates(root, ""); err != nil {
		return nil, err
	}
	f.root = root
	return f, nil
}

// Errorf is an *Error at node's line for key.
func (f *File) Errorf(node *yaml.Node, key, format string, args ...any) error {
	line := 0
	if node != nil {
		line = node.Line
	}
	return &Error{File: f.Name, Line: line, Key: key, Err: fmt.Errorf(format, args...)}
}

// checkDuplicates refuses a key given twice in one mapping, at any depth:
// YAML forbids it and the second would silently win.
func (f *File) checkDuplicates(n *yaml.Node, path string) error {
	switch n.Kind {
	case yaml.MappingNode:
		seen := map[string]int{}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			key := join(path, k.Value)
			if line, dup := seen[k.Value]; dup {
				return f.Errorf(k, key, "given twice (first on line %d)", line)
			}
			seen[k.Value] = k.Line
			if err := f.checkDuplicates(v, key); err != nil {
				return err
			}
		}
	case yaml.SequenceNode:
		for _, item := range n.Content {
			if err := f.checkDuplicates(item, path); err != nil {
				return err
			}
		}
	}
	return nil
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// Kind names the shape of a node for errors: a list, a mapping, a value.
func Kind(n *yaml.Node) string {
	switch n.Kind {
	case yaml.SequenceNode:
		return "a list"
	case yaml.MappingNode:
		return "a mapping"
	case yaml.AliasNode:
		return "an alias"
	}
	return "a single value"
}

// Scalar returns n's value as its text, for a node that must be a single
// value; null is the empty string.
func (f *File) Scalar(n *yaml.Node, key string) (string, error) {
	if n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	if n.Kind != yaml.ScalarNode {
		return "", f.Errorf(n, key, "want a single value, got %s", Kind(n))
	}
	if n.Tag == "!!null" {
		return "", nil
	}
	return n.Value, nil
}

// Strings returns a list's items, or a single value as a list of one.
func (f *File) Strings(n *yaml.Node, key string) ([]string, error) {
	if n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	if n.Kind != yaml.SequenceNode {
		s, err := f.Scalar(n, key)
		if err != nil {
			return nil, f.Errorf(n, key, "want a value or a list of values, got %s", Kind(n))
		}
		if s == "" {
			return nil, nil
		}
		return []string{s}, nil
	}
	out := make([]string, 0, len(n.Content))
	for _, item := range n.Content {
		if item.Kind != yaml.ScalarNode {
			return nil, f.Errorf(item, key, "want a list of single values, got %s in it", Kind(item))
		}
		out = append(out, item.Value)
	}
	return out, nil
}

// Entry is one key of a mapping and its value.
type Entry struct {
	Key   string
	KeyNo *yaml.Node // the key's node: its Line is the key's line
	Value *yaml.Node
}

// Entries returns the entries of the mapping n, in order.
func (f *File) Entries(n *yaml.Node, key string) ([]Entry, error) {
	if n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
		return nil, nil
	}
	if n.Kind != yaml.MappingNode {
		return nil, f.Errorf(n, key, "want a mapping (name: value), got %s", Kind(n))
	}
	out := make([]Entry, 0, len(n.Content)/2)
	for i := 0; i+1 < len(n.Content); i += 2 {
		k := n.Content[i]
		if k.Kind != yaml.ScalarNode {
			return nil, f.Errorf(k, key, "want a name as key, got %s", Kind(k))
		}
		out = append(out, Entry{Key: k.Value, KeyNo: k, Value: n.Content[i+1]})
	}
	return out, nil
}

// ListMode says how a flag takes a YAML list.
type ListMode int

const (
	// Join sets the flag once, to the items joined by commas (a flag of
	// comma-separated values).
	Join ListMode = iota + 1
	// Repeat sets the flag once per item (a repeatable flag).
	Repeat
)

// Accumulator is a flag.Value whose Set adds to what it holds (a
// repeatable flag). Parse calls Reset before a source of higher precedence
// sets it for the first time, so that the command line's values replace
// the file's rather than add to them.
type Accumulator interface {
	flag.Value
	Reset()
}

// Spec says how the file maps onto a flag set.
type Spec struct {
	// FlagSet holds the flags; each is a key of the file.
	FlagSet *flag.FlagSet
	// ConfigFlag is the name of the flag naming the file ("config"); it is
	// no key of the file.
	ConfigFlag string
	// EnvName is the environment variable of a flag; Getenv reads it
	// (empty is unset).
	EnvName func(flag string) string
	Getenv  func(string) string
	// Secret says whether a flag holds a secret: its value is never
	// quoted in errors.
	Secret func(flag string) bool
	// Lists are the flags that also take a YAML list, and how.
	Lists map[string]ListMode
	// Aliases are keys that stand for a flag (relays for relay-url); a
	// key and its flag both in the file is an error.
	Aliases map[string]string
	// Structured handles the keys that are not flags; it is called in
	// the file's order, before the environment and the command line.
	Structured map[string]func(f *File, e Entry) error
	// NoEnv lists flags not read from the environment.
	NoEnv map[string]bool
}

// Result is what Parse found.
type Result struct {
	// File is the config file, nil when none was named.
	File *File
	// Sources tells which source set each flag that was set.
	Sources Sources
}

// Parse finds the config file (the ConfigFlag on the command line, else its
// environment variable), applies it, then the environment, then parses
// args. Errors of the command line wrap flag.ErrHelp or are
// *UsageError; those of the file are *Error; those of the environment name
// the variable.
func Parse(spec Spec, args []string) (*Result, error) {
	fs := spec.FlagSet
	given, path := prescan(fs, args, spec.ConfigFlag)
	if path == "" && spec.ConfigFlag != "" && spec.Getenv != nil {
		path = spec.Getenv(spec.EnvName(spec.ConfigFlag))
	}
	res := &Result{Sources: Sources{}}
	if path != "" {
		f, err := Load(path)
		if err != nil {
			return nil, err
		}
		res.File = f
		if err := f.apply(spec, res.Sources); err != nil {
			return nil, err
		}
	}
	if spec.Getenv != nil {
		var envErr error
		fs.VisitAll(func(fl *flag.Flag) {
			if envErr != nil || fl.Name == spec.ConfigFlag || spec.NoEnv[fl.Name] {
				return
			}
			name := spec.EnvName(fl.Name)
			v := spec.Getenv(name)
			if v == "" {
				return
			}
			if acc, ok := fl.Value.(Accumulator); ok && res.Sources[fl.Name] != FromDefault {
				acc.Reset()
			}
			if err := fs.Set(fl.Name, v); err != nil {
				envErr = fmt.Errorf("%s: %s", name, setError(spec, fl.Name, v, err))
				return
			}
			res.Sources[fl.Name] = FromEnv
		})
		if envErr != nil {
			return nil, envErr
		}
	}
	for _, name := range given {
		if fl := fs.Lookup(name); fl != nil {
			if acc, ok := fl.Value.(Accumulator); ok && res.Sources[name] != FromDefault {
				acc.Reset()
			}
		}
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil, err
		}
		return nil, Usage(err)
	}
	for _, name := range given {
		if fs.Lookup(name) != nil {
			res.Sources[name] = FromFlag
		}
	}
	return res, nil
}

// setError is the error of a refused value, quoting it unless secret.
func setError(spec Spec, name, value string, err error) error {
	if spec.Secret != nil && spec.Secret(name) {
		return fmt.Errorf("invalid value: %v", err)
	}
	return fmt.Errorf("invalid value %q: %v", value, err)
}

// apply sets the file's keys, in order.
func (f *File) apply(spec Spec, sources Sources) error {
	fs := spec.FlagSet
	entries, err := f.Entries(f.root, "")
	if err != nil {
		return err
	}
	keyOf := map[string]string{} // flag -> the key that set it
	for _, e := range entries {
		if h, ok := spec.Structured[e.Key]; ok {
			if err := h(f, e); err != nil {
				return err
			}
			continue
		}
		name := e.Key
		if target, ok := spec.Aliases[name]; ok {
			name = target
		}
		fl := fs.Lookup(name)
		if fl == nil || name == spec.ConfigFlag {
			return f.Errorf(e.KeyNo, e.Key, "unknown key%s", suggest(spec, e.Key))
		}
		if other, dup := keyOf[name]; dup {
			return f.Errorf(e.KeyNo, e.Key, "sets what %s already set: give one of them", other)
		}
		keyOf[name] = e.Key
		var values []string
		switch mode := spec.Lists[name]; {
		case mode != 0:
			items, err := f.Strings(e.Value, e.Key)
			if err != nil {
				return err
			}
			if mode == Join {
				values = []string{strings.Join(items, ",")}
			} else {
				values = items
			}
		default:
			v, err := f.Scalar(e.Value, e.Key)
			if err != nil {
				return err
			}
			values = []string{v}
		}
		for _, v := range values {
			if err := fs.Set(name, v); err != nil {
				return &Error{File: f.Name, Line: e.KeyNo.Line, Key: e.Key, Err: setError(spec, name, v, err)}
			}
		}
		sources[name] = FromFile
	}
	return nil
}

// suggest names the flag closest to an unknown key, if one is close.
func suggest(spec Spec, key string) string {
	var names []string
	spec.FlagSet.VisitAll(func(fl *flag.Flag) {
		if fl.Name != spec.ConfigFlag {
			names = append(names, fl.Name)
		}
	})
	for k := range spec.Structured {
		names = append(names, k)
	}
	for k := range spec.Aliases {
		names = append(names, k)
	}
	slices.Sort(names)
	best, bestD := "", 3
	for _, n := range names {
		if d := distance(strings.ToLower(strings.ReplaceAll(key, "_", "-")), n); d < bestD {
			best, bestD = n, d
		}
	}
	if best == "" {
		return " (the keys are the flags' names, see -h)"
	}
	return fmt.Sprintf(" (did you mean %s?)", best)
}

// distance is the Levenshtein distance of a and b.
func distance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// prescan walks args as the flag package will, to find the flags the
// command line gives (in order, repeats included) and the value of the
// config flag, before anything is set. It stops where the flag package
// stops: at "--", at the first argument that is not a flag, or at an
// unknown flag (which Parse then reports).
func prescan(fs *flag.FlagSet, args []string, configFlag string) (given []string, config string) {
	for len(args) > 0 {
		s := args[0]
		if len(s) < 2 || s[0] != '-' {
			return
		}
		minus := 1
		if s[1] == '-' {
			minus = 2
			if len(s) == 2 { // "--"
				return
			}
		}
		name := s[minus:]
		if name == "" || name[0] == '-' || name[0] == '=' {
			return
		}
		args = args[1:]
		value, hasValue := "", false
		if i := strings.IndexByte(name, '='); i >= 0 {
			name, value, hasValue = name[:i], name[i+1:], true
		}
		fl := fs.Lookup(name)
		if fl == nil {
			return
		}
		if bf, ok := fl.Value.(interface{ IsBoolFlag() bool }); !ok || !bf.IsBoolFlag() {
			if !hasValue {
				if len(args) == 0 {
					return
				}
				value, args = args[0], args[1:]
			}
		}
		given = append(given, name)
		if name == configFlag {
			config = value
		}
	}
	return
}
