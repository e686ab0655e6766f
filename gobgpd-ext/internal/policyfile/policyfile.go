// Package policyfile reads and writes the gating policy as YAML: the format
// of `fibgate policy get|set`, of the daemons' policy files and of the
// policy section of their config, so one file works everywhere.
package policyfile

import (
	"bytes"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"
	"gopkg.in/yaml.v3"

	pb "github.com/fibgate/fibgate/proto/fibgate/v1"
)

// A policy file is YAML with the field names of the fibgate.v1.Policy
// message (snake_case), enums spelled as words (level: hardware) and
// durations as Go writes them ("1s", "1m30s"), so what `policy get` prints
// can be edited and given back to `policy set`. Unknown keys are errors:
// a typo must not silently become a default.

type policyFile struct {
	Scopes []scopeFile `yaml:"scopes"`
}

type scopeFile struct {
	Name           string            `yaml:"name"`
	Family         string            `yaml:"family,omitempty"`
	Tables         []uint32          `yaml:"tables,omitempty,flow"`
	Prefixes       []prefixRangeFile `yaml:"prefixes,omitempty"`
	Level          string            `yaml:"level,omitempty"`
	ECMP           string            `yaml:"ecmp,omitempty"`
	OnFailure      string            `yaml:"on_failure,omitempty"`
	PendingTimeout string            `yaml:"pending_timeout,omitempty"`
	FailOpen       bool              `yaml:"fail_open,omitempty"`
	HoldDown       *holdDownFile     `yaml:"hold_down,omitempty"`
	Retry          *retryFile        `yaml:"retry,omitempty"`
}

type retryFile struct {
	Initial string `yaml:"initial,omitempty"`
	Max     string `yaml:"max,omitempty"`
}

type prefixRangeFile struct {
	Prefix string `yaml:"prefix"`
	MinLen uint32 `yaml:"min_len,omitempty"`
	MaxLen uint32 `yaml:"max_len,omitempty"`
}

type holdDownFile struct {
	Initial    string  `yaml:"initial,omitempty"`
	Max        string  `yaml:"max,omitempty"`
	Multiplier float64 `yaml:"multiplier,omitempty"`
}

// enumWord reads an enum from its word ("hardware") or its proto name
// ("LEVEL_HARDWARE"); "" is unspecified (the default).
func enumWord(field, s, prefix string, values map[string]int32, words string) (int32, error) {
	if s == "" {
		return 0, nil
	}
	name := strings.ToUpper(s)
	if !strings.HasPrefix(name, prefix) {
		name = prefix + name
	}
	v, ok := values[name]
	if !ok || v == 0 {
		return 0, fmt.Errorf("%s: unknown value %q (want %s)", field, s, words)
	}
	return v, nil
}

func word(name, prefix string) string { return strings.ToLower(strings.TrimPrefix(name, prefix)) }

func fileDuration(field, s string) (*durationpb.Duration, error) {
	if s == "" {
		return nil, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return nil, fmt.Errorf("%s: %q is not a duration (like 500ms, 30s or 1m30s)", field, s)
	}
	return durationpb.New(d), nil
}

// YAMLError turns yaml.v3's multi-line errors into one line with the line
// number and the field, without Go type names.
var yamlTypeName = regexp.MustCompile(` in type \w+\.\w+`)

func YAMLError(err error) error {
	var te *yaml.TypeError
	if errors.As(err, &te) {
		var parts []string
		for _, e := range te.Errors {
			e = yamlTypeName.ReplaceAllString(e, "")
			e = strings.Replace(e, "field ", "unknown field ", 1)
			e = strings.Replace(e, " not found", "", 1)
			parts = append(parts, e)
		}
		return errors.New(strings.Join(parts, "; "))
	}
	return errors.New(strings.TrimPrefix(err.Error(), "yaml: "))
}

// Parse reads a policy file into the wire form; errors name the
// line (syntax, unknown keys) or the field path (bad values), as in
// "scopes[1].level: unknown value ...".
func Parse(b []byte) (*pb.Policy, error) {
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	var f policyFile
	if err := dec.Decode(&f); err != nil {
		if err.Error() == "EOF" {
			return nil, errors.New("the file is empty: a policy needs at least a scopes list")
		}
		return nil, YAMLError(err)
	}
	out := &pb.Policy{}
	for i, s := range f.Scopes {
		path := fmt.Sprintf("scopes[%d]", i)
		ps := &pb.Scope{Name: s.Name, Tables: s.Tables, FailOpen: s.FailOpen}
		fam, err := enumWord(path+".family", s.Family, "FAMILY_", pb.Family_value, "ipv4 or ipv6")
		if err != nil {
			return nil, err
		}
		ps.Family = pb.Family(fam)
		lvl, err := enumWord(path+".level", s.Level, "LEVEL_", pb.Level_value, "fib, hardware or offload")
		if err != nil {
			return nil, err
		}
		ps.Level = pb.Level(lvl)
		ecmp, err := enumWord(path+".ecmp", s.ECMP, "ECMP_MODE_", pb.EcmpMode_value, "all or any")
		if err != nil {
			return nil, err
		}
		ps.Ecmp = pb.EcmpMode(ecmp)
		onf, err := enumWord(path+".on_failure", s.OnFailure, "ON_FAILURE_", pb.OnFailure_value, "withdraw or keep")
		if err != nil {
			return nil, err
		}
		ps.OnFailure = pb.OnFailure(onf)
		if ps.PendingTimeout, err = fileDuration(path+".pending_timeout", s.PendingTimeout); err != nil {
			return nil, err
		}
		if h := s.HoldDown; h != nil {
			ps.HoldDown = &pb.HoldDown{Multiplier: h.Multiplier}
			if ps.HoldDown.Initial, err = fileDuration(path+".hold_down.initial", h.Initial); err != nil {
				return nil, err
			}
			if ps.HoldDown.Max, err = fileDuration(path+".hold_down.max", h.Max); err != nil {
				return nil, err
			}
		}
		if r := s.Retry; r != nil {
			ps.Retry = &pb.Retry{}
			if ps.Retry.Initial, err = fileDuration(path+".retry.initial", r.Initial); err != nil {
				return nil, err
			}
			if ps.Retry.Max, err = fileDuration(path+".retry.max", r.Max); err != nil {
				return nil, err
			}
		}
		for _, r := range s.Prefixes {
			ps.Prefixes = append(ps.Prefixes, &pb.PrefixRange{Prefix: r.Prefix, MinLen: r.MinLen, MaxLen: r.MaxLen})
		}
		out.Scopes = append(out.Scopes, ps)
	}
	return out, nil
}

// Format writes a policy as a policy file, every field spelled
// out as the daemon has it.
func Format(p *pb.Policy) ([]byte, error) {
	f := policyFile{Scopes: []scopeFile{}}
	for _, s := range p.GetScopes() {
		sf := scopeFile{Name: s.GetName(), Tables: s.GetTables(), FailOpen: s.GetFailOpen()}
		if s.GetFamily() != pb.Family_FAMILY_UNSPECIFIED {
			sf.Family = word(s.GetFamily().String(), "FAMILY_")
		}
		if s.GetLevel() != pb.Level_LEVEL_UNSPECIFIED {
			sf.Level = word(s.GetLevel().String(), "LEVEL_")
		}
		if s.GetEcmp() != pb.EcmpMode_ECMP_MODE_UNSPECIFIED {
			sf.ECMP = word(s.GetEcmp().String(), "ECMP_MODE_")
		}
		if s.GetOnFailure() != pb.OnFailure_ON_FAILURE_UNSPECIFIED {
			sf.OnFailure = word(s.GetOnFailure().String(), "ON_FAILURE_")
		}
		if d := s.GetPendingTimeout(); d != nil {
			sf.PendingTimeout = d.AsDuration().String()
		}
		if h := s.GetHoldDown(); h != nil {
			sf.HoldDown = &holdDownFile{Initial: h.GetInitial().AsDuration().String(), Max: h.GetMax().AsDuration().String(), Multiplier: h.GetMultiplier()}
		}
		if r := s.GetRetry(); r != nil {
			sf.Retry = &retryFile{Initial: r.GetInitial().AsDuration().String(), Max: r.GetMax().AsDuration().String()}
		}
		for _, r := range s.GetPrefixes() {
			sf.Prefixes = append(sf.Prefixes, prefixRangeFile{Prefix: r.GetPrefix(), MinLen: r.GetMinLen(), MaxLen: r.GetMaxLen()})
		}
		f.Scopes = append(f.Scopes, sf)
	}
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(f); err != nil {
		return nil, err
	}
	return buf.Bytes(), enc.Close()
}
