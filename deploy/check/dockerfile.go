package main

import (
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// image is what the final stage of the Dockerfile says about the
// container the manifests run.
type image struct {
	entrypoint []string
	expose     map[int32]bool
	volumes    []string
	user       string
	env        map[string]string
}

// instruction is one logical line of a Dockerfile.
type instruction struct {
	line    int
	keyword string // upper case
	flags   map[string]string
	args    string // the rest, continuation lines joined
}

var knownInstructions = map[string]bool{
	"FROM": true, "RUN": true, "CMD": true, "LABEL": true, "EXPOSE": true, "ENV": true, "ADD": true,
	"COPY": true, "ENTRYPOINT": true, "VOLUME": true, "USER": true, "WORKDIR": true, "ARG": true,
	"ONBUILD": true, "STOPSIGNAL": true, "HEALTHCHECK": true, "SHELL": true,
}

// parseDockerfile splits a Dockerfile into instructions: comments and
// parser directives dropped, backslash continuations joined, leading
// --flags of an instruction separated. Heredocs are not supported (the
// Dockerfile does not use them).
func parseDockerfile(text string) ([]instruction, []string) {
	var out []instruction
	var errs []string
	lines := strings.Split(text, "\n")
	for i := 0; i < len(lines); i++ {
		start := i + 1
		l := strings.TrimSpace(lines[i])
		if l == "" || strings.HasPrefix(l, "#") {
			continue
		}
		for strings.HasSuffix(l, `\`) && i+1 < len(lines) {
			l = strings.TrimSuffix(l, `\`)
			i++
			next := strings.TrimSpace(lines[i])
			if strings.HasPrefix(next, "#") {
				continue
			}
			if next == "" {
				errs = append(errs, fmt.Sprintf("line %d: empty continuation line (deprecated, an error in future Docker versions)", i+1))
				continue
			}
			l += " " + next
		}
		if strings.HasSuffix(l, `\`) {
			errs = append(errs, fmt.Sprintf("line %d: the file ends in a continuation", start))
			l = strings.TrimSuffix(l, `\`)
		}
		if strings.Contains(l, "<<") && (strings.HasPrefix(strings.ToUpper(l), "RUN") || strings.HasPrefix(strings.ToUpper(l), "COPY")) {
			errs = append(errs, fmt.Sprintf("line %d: heredocs are not supported by this check", start))
		}
		kw, rest, _ := strings.Cut(l, " ")
		in := instruction{line: start, keyword: strings.ToUpper(kw), flags: map[string]string{}}
		if kw != in.keyword {
			errs = append(errs, fmt.Sprintf("line %d: write instructions in upper case (%s)", start, in.keyword))
		}
		if !knownInstructions[in.keyword] {
			errs = append(errs, fmt.Sprintf("line %d: unknown instruction %q", start, kw))
			continue
		}
		rest = strings.TrimSpace(rest)
		for strings.HasPrefix(rest, "--") {
			var f string
			f, rest, _ = strings.Cut(rest, " ")
			rest = strings.TrimSpace(rest)
			name, val, _ := strings.Cut(strings.TrimPrefix(f, "--"), "=")
			in.flags[name] = val
		}
		if rest == "" {
			errs = append(errs, fmt.Sprintf("line %d: %s needs arguments", start, in.keyword))
		}
		in.args = rest
		out = append(out, in)
	}
	return out, errs
}

// jsonForm parses the exec (JSON array) form of CMD, ENTRYPOINT, VOLUME;
// ok is false for the shell form.
func jsonForm(args string) ([]string, bool, error) {
	if !strings.HasPrefix(args, "[") {
		return nil, false, nil
	}
	var v []string
	if err := json.Unmarshal([]byte(args), &v); err != nil {
		return nil, true, fmt.Errorf("not a JSON array of strings (Docker would run it through /bin/sh as text): %v", err)
	}
	return v, true, nil
}

// flagsAllowed lists the --flags each instruction accepts.
var flagsAllowed = map[string][]string{
	"FROM": {"platform"},
	"COPY": {"from", "chown", "chmod", "link", "parents", "exclude"},
	"ADD":  {"chown", "chmod", "link", "checksum", "keep-git-dir", "exclude", "unpack"},
	"RUN":  {"mount", "network", "security", "device"},
}

// checkDockerfile parses the Dockerfile and checks what a build, never run
// in CI, would only reveal later: instructions and their flags, FROM
// syntax, COPY --from naming an earlier stage, an exec-form ENTRYPOINT
// (signals reach lonelypsd, and a distroless image has no shell), and
// what the final stage declares (ports, volume, user) for comparison with
// the manifests.
func checkDockerfile(path string) (*image, []string) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, []string{err.Error()}
	}
	ins, perrs := parseDockerfile(string(data))
	var errs []string
	bad := func(line int, format string, args ...any) {
		errs = append(errs, fmt.Sprintf("%s: line %d: %s", path, line, fmt.Sprintf(format, args...)))
	}
	for _, e := range perrs {
		errs = append(errs, path+": "+e)
	}
	stages := map[string]bool{}
	nstage := 0
	var img *image
	entrypoints := 0
	for _, in := range ins {
		for f := range in.flags {
			allowed := flagsAllowed[in.keyword]
			ok := false
			for _, a := range allowed {
				ok = ok || a == f
			}
			if !ok {
				bad(in.line, "%s has no flag --%s", in.keyword, f)
			}
		}
		if in.keyword != "FROM" && in.keyword != "ARG" && nstage == 0 {
			bad(in.line, "%s before the first FROM", in.keyword)
		}
		switch in.keyword {
		case "FROM":
			f := strings.Fields(in.args)
			if len(f) != 1 && !(len(f) == 3 && strings.EqualFold(f[1], "AS")) {
				bad(in.line, "FROM %s: want FROM IMAGE [AS NAME]", in.args)
			}
			if len(f) == 3 {
				if f[1] != "AS" {
					bad(in.line, "write AS in upper case, like FROM")
				}
				name := strings.ToLower(f[2])
				if stages[name] {
					bad(in.line, "stage name %q used twice", f[2])
				}
				stages[name] = true
			}
			if entrypoints > 1 {
				bad(in.line, "the previous stage has %d ENTRYPOINT instructions", entrypoints)
			}
			nstage++
			entrypoints = 0
			img = &image{expose: map[int32]bool{}, env: map[string]string{}}
		case "COPY":
			if from, ok := in.flags["from"]; ok {
				if _, err := strconv.Atoi(from); err != nil && !stages[strings.ToLower(from)] && !strings.ContainsAny(from, "/:") {
					bad(in.line, "COPY --from=%s: no earlier stage of that name", from)
				}
			}
			if ch, ok := in.flags["chown"]; ok && ch == "" {
				bad(in.line, "COPY --chown needs a value")
			}
			args, isJSON, err := jsonForm(in.args)
			if err != nil {
				bad(in.line, "COPY %s: %v", in.args, err)
			} else if !isJSON {
				args = strings.Fields(in.args)
			}
			if len(args) < 2 {
				bad(in.line, "COPY needs a source and a destination")
			}
		case "ENTRYPOINT", "CMD":
			args, isJSON, err := jsonForm(in.args)
			switch {
			case err != nil:
				bad(in.line, "%s %s: %v", in.keyword, in.args, err)
			case !isJSON:
				bad(in.line, "%s %s is in shell form: it would run through /bin/sh, which a distroless image does not have, and SIGTERM would not reach lonelypsd; use the JSON form", in.keyword, in.args)
			case len(args) == 0:
				bad(in.line, "%s is empty", in.keyword)
			}
			if in.keyword == "ENTRYPOINT" {
				entrypoints++
				img.entrypoint = args
			}
		case "EXPOSE":
			for _, p := range strings.Fields(in.args) {
				num, proto, _ := strings.Cut(p, "/")
				n, err := strconv.Atoi(num)
				if err != nil || n < 1 || n > 65535 || (proto != "" && proto != "tcp") {
					bad(in.line, "EXPOSE %s: want a TCP port number", p)
					continue
				}
				img.expose[int32(n)] = true
			}
		case "VOLUME":
			v, isJSON, err := jsonForm(in.args)
			if err != nil {
				bad(in.line, "VOLUME %s: %v", in.args, err)
			} else if !isJSON {
				v = strings.Fields(in.args)
			}
			img.volumes = append(img.volumes, v...)
		case "USER":
			img.user = in.args
		case "ENV":
			for _, kv := range strings.Fields(in.args) {
				k, v, ok := strings.Cut(kv, "=")
				if !ok {
					bad(in.line, "ENV %s: use the KEY=VALUE form", in.args)
					break
				}
				img.env[k] = v
			}
		case "WORKDIR":
			if !strings.HasPrefix(in.args, "/") && !strings.HasPrefix(in.args, "$") {
				bad(in.line, "WORKDIR %s is relative", in.args)
			}
		}
	}
	if nstage == 0 {
		return nil, append(errs, path+": no FROM")
	}
	if entrypoints > 1 {
		errs = append(errs, fmt.Sprintf("%s: the final stage has %d ENTRYPOINT instructions", path, entrypoints))
	}
	if len(img.entrypoint) == 0 {
		errs = append(errs, path+": the final stage has no ENTRYPOINT")
	}
	return img, errs
}
