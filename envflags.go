package main

import (
	"flag"
	"fmt"
	"strconv"
	"time"
)

// This file gives wxlogin's flags their defaults from the environment, so
// that every setting is a flag and a variable at once, the flag winning:
// loadConfig (main.go) lists them.

// envFlags defines flags whose defaults come from environment variables, and
// collects the errors of variables that do not parse, naming them.
type envFlags struct {
	fs     *flag.FlagSet
	getenv func(string) string
	errs   []error
}

func (e *envFlags) usage(text, env string) string { return text + " (env " + env + ")" }

func (e *envFlags) string(p *string, name, env, def, usage string) {
	if v := e.getenv(env); v != "" {
		def = v
	}
	e.fs.StringVar(p, name, def, e.usage(usage, env))
}

func (e *envFlags) duration(p *time.Duration, name, env string, def time.Duration, usage string) {
	e.fs.DurationVar(p, name, fromEnv(e, env, def, time.ParseDuration, "a duration like 2h or 30m"), e.usage(usage, env))
}

func (e *envFlags) int(p *int, name, env string, def int, usage string) {
	e.fs.IntVar(p, name, fromEnv(e, env, def, strconv.Atoi, "a whole number"), e.usage(usage, env))
}

// fromEnv is env's value read by parse, or def when env is unset. A value
// parse refuses is noted as an error saying it is not what.
func fromEnv[T any](e *envFlags, env string, def T, parse func(string) (T, error), what string) T {
	v := e.getenv(env)
	if v == "" {
		return def
	}
	parsed, err := parse(v)
	if err != nil {
		e.errs = append(e.errs, fmt.Errorf("%s: %q is not %s", env, v, what))
		return def
	}
	return parsed
}

func (e *envFlags) bool(p *optionalBool, name, env, usage string) {
	if v := e.getenv(env); v != "" {
		if err := p.Set(v); err != nil {
			e.errs = append(e.errs, fmt.Errorf("%s: %q is not a boolean", env, v))
		}
	}
	e.fs.Var(p, name, e.usage(usage, env))
}

// set reports whether a setting was given by flag or by environment.
func (e *envFlags) set(name, env string) bool {
	set := e.getenv(env) != ""
	e.fs.Visit(func(f *flag.Flag) { set = set || f.Name == name })
	return set
}

// optionalBool is a boolean flag that knows whether it was given, for
// settings whose default depends on other settings.
type optionalBool struct {
	value, set bool
}

func (b *optionalBool) String() string {
	if b == nil || !b.set {
		return "auto"
	}
	return strconv.FormatBool(b.value)
}

func (b *optionalBool) Set(s string) error {
	v, err := strconv.ParseBool(s)
	if err != nil {
		return err
	}
	b.value, b.set = v, true
	return nil
}

func (b *optionalBool) IsBoolFlag() bool { return true }
