package main

import (
	"encoding/json"
	"fmt"
	"os"
	"slices"
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
	d := &dockerfileCheck{path: path, stages: map[string]bool{}}
	for _, e := range perrs {
		d.errs = append(d.errs, path+": "+e)
	}
	for _, in := range ins {
		d.instruction(in)
	}
	if d.img == nil {
		return nil, append(d.errs, path+": no FROM")
	}
	if d.entrypoints > 1 {
		d.errs = append(d.errs, fmt.Sprintf("%s: the final stage has %d ENTRYPOINT instructions", path, d.entrypoints))
	}
	if len(d.img.entrypoint) == 0 {
		d.errs = append(d.errs, path+": the final stage has no ENTRYPOINT")
	}
	return d.img, d.errs
}

// dockerfileCheck is the state of checkDockerfile as it goes through the
// instructions.
type dockerfileCheck struct {
	path        string
	errs        []string
	stages      map[string]bool // names given with FROM ... AS, lower case
	img         *image          // the current stage; nil before the first FROM
	entrypoints int             // ENTRYPOINT instructions in the current stage
}

func (d *dockerfileCheck) bad(line int, format string, args ...any) {
	d.errs = append(d.errs, fmt.Sprintf("%s: line %d: %s", d.path, line, fmt.Sprintf(format, args...)))
}

func (d *dockerfileCheck) instruction(in instruction) {
	for f := range in.flags {
		if !slices.Contains(flagsAllowed[in.keyword], f) {
			d.bad(in.line, "%s has no flag --%s", in.keyword, f)
		}
	}
	if in.keyword != "FROM" && in.keyword != "ARG" && d.img == nil {
		// Nothing to record it in: Docker refuses the file anyway.
		d.bad(in.line, "%s before the first FROM", in.keyword)
		return
	}
	switch in.keyword {
	case "FROM":
		d.from(in)
	case "COPY":
		d.copy(in)
	case "ENTRYPOINT", "CMD":
		d.command(in)
	case "EXPOSE":
		for _, p := range strings.Fields(in.args) {
			num, proto, _ := strings.Cut(p, "/")
			n, err := strconv.Atoi(num)
			if err != nil || n < 1 || n > 65535 || (proto != "" && proto != "tcp") {
				d.bad(in.line, "EXPOSE %s: want a TCP port number", p)
				continue
			}
			d.img.expose[int32(n)] = true
		}
	case "VOLUME":
		d.img.volumes = append(d.img.volumes, d.listArgs(in)...)
	case "USER":
		d.img.user = in.args
	case "ENV":
		for _, kv := range strings.Fields(in.args) {
			k, v, ok := strings.Cut(kv, "=")
			if !ok {
				d.bad(in.line, "ENV %s: use the KEY=VALUE form", in.args)
				break
			}
			d.img.env[k] = v
		}
	case "WORKDIR":
		if !strings.HasPrefix(in.args, "/") && !strings.HasPrefix(in.args, "$") {
			d.bad(in.line, "WORKDIR %s is relative", in.args)
		}
	}
}

// from starts a stage.
func (d *dockerfileCheck) from(in instruction) {
	f := strings.Fields(in.args)
	if len(f) != 1 && !(len(f) == 3 && strings.EqualFold(f[1], "AS")) {
		d.bad(in.line, "FROM %s: want FROM IMAGE [AS NAME]", in.args)
	}
	if len(f) == 3 {
		if f[1] != "AS" {
			d.bad(in.line, "write AS in upper case, like FROM")
		}
		name := strings.ToLower(f[2])
		if d.stages[name] {
			d.bad(in.line, "stage name %q used twice", f[2])
		}
		d.stages[name] = true
	}
	if d.entrypoints > 1 {
		d.bad(in.line, "the previous stage has %d ENTRYPOINT instructions", d.entrypoints)
	}
	d.entrypoints = 0
	d.img = &image{expose: map[int32]bool{}, env: map[string]string{}}
}

func (d *dockerfileCheck) copy(in instruction) {
	if from, ok := in.flags["from"]; ok {
		if _, err := strconv.Atoi(from); err != nil && !d.stages[strings.ToLower(from)] && !strings.ContainsAny(from, "/:") {
			d.bad(in.line, "COPY --from=%s: no earlier stage of that name", from)
		}
	}
	if ch, ok := in.flags["chown"]; ok && ch == "" {
		d.bad(in.line, "COPY --chown needs a value")
	}
	if len(d.listArgs(in)) < 2 {
		d.bad(in.line, "COPY needs a source and a destination")
	}
}

// command checks ENTRYPOINT and CMD, which must be in exec form.
func (d *dockerfileCheck) command(in instruction) {
	args, isJSON, err := jsonForm(in.args)
	switch {
	case err != nil:
		d.bad(in.line, "%s %s: %v", in.keyword, in.args, err)
	case !isJSON:
		d.bad(in.line, "%s %s is in shell form: it would run through /bin/sh, which a distroless image does not have, and SIGTERM would not reach lonelypsd; use the JSON form", in.keyword, in.args)
	case len(args) == 0:
		d.bad(in.line, "%s is empty", in.keyword)
	}
	if in.keyword == "ENTRYPOINT" {
		d.entrypoints++
		d.img.entrypoint = args
	}
}

// listArgs returns the arguments of an instruction that takes them in
// JSON form or separated by white space (COPY, VOLUME).
func (d *dockerfileCheck) listArgs(in instruction) []string {
	args, isJSON, err := jsonForm(in.args)
	if err != nil {
		d.bad(in.line, "%s %s: %v", in.keyword, in.args, err)
	} else if !isJSON {
		args = strings.Fields(in.args)
	}
	return args
}
