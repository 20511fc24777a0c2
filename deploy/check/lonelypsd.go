package main

import (
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path"
	"slices"
	"strconv"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/labels"
)

// readServeFlags reads the flags of `lonelypsd serve` from the list that
// cmd/lonelypsd's TestServeFlagList keeps equal to the flags serve
// registers: name -> whether it takes a value (bool flags do not).
func readServeFlags(file string) (map[string]bool, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("flags of lonelypsd serve: %w", err)
	}
	flags := map[string]bool{}
	for i, line := range strings.Split(string(data), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		f := strings.Fields(line)
		if len(f) != 2 || (f[1] != "value" && f[1] != "bool") || strings.HasPrefix(f[0], "-") {
			return nil, fmt.Errorf("%s:%d: %q: want NAME value or NAME bool", file, i+1, line)
		}
		if _, dup := flags[f[0]]; dup {
			return nil, fmt.Errorf("%s:%d: flag %s listed twice", file, i+1, f[0])
		}
		flags[f[0]] = f[1] == "value"
	}
	for _, req := range requiredFlags() {
		if !flags[req] {
			return nil, fmt.Errorf("%s: lists no --%s taking a value: not the flags of lonelypsd serve", file, req)
		}
	}
	return flags, nil
}

// requiredFlags are the flags lonelypsd serve refuses to start without.
func requiredFlags() []string { return []string{"node-id", "http-addr", "raft-addr", "data-dir"} }

// envFlag maps an environment variable name to the flag lonelypsd reads
// it as (LONELYPSD_HTTP_ADDR -> http-addr).
func envFlag(name string) (string, bool) {
	rest, ok := strings.CutPrefix(name, "LONELYPSD_")
	return strings.ToLower(strings.ReplaceAll(rest, "_", "-")), ok
}

// node is the effective configuration of one lonelypsd container, with
// $(VAR) references expanded for the StatefulSet's first pod.
type node struct {
	w        workload
	sts      *appsv1.StatefulSet
	ct       *corev1.Container
	raw      map[string]string // flag -> value as written
	val      map[string]string // flag -> value expanded for pod <sts>-0
	podName  string            // <sts>-0
	nsMarker string
}

func (n *node) get(flag string) (string, bool) {
	v, ok := n.val[flag]
	return v, ok
}

// checkLonelypsd checks every lonelypsd container against the binary's
// flags and against what the node needs to form a cluster on Kubernetes.
func (c *checker) checkLonelypsd(flags map[string]bool, img *image) {
	lcs := c.lonelypsdContainers(img)
	if len(lcs) == 0 {
		c.errs = append(c.errs, "no StatefulSet container runs lonelypsd serve")
	}
	for _, lc := range lcs {
		o := lc.w.o
		where := "container " + lc.ct.Name
		if len(lc.args) == 0 || lc.args[0] != "serve" {
			c.errf(o, "%s runs lonelypsd without the serve command: %q", where, lc.argv)
			continue
		}
		n := &node{w: lc.w, sts: lc.sts, ct: lc.ct, raw: map[string]string{}, val: map[string]string{},
			podName: lc.sts.Name + "-0", nsMarker: "namespace-of-the-pod"}
		c.parseNodeFlags(o, where, n, lc.args[1:], flags)
		c.checkNode(o, where, n, flags, img)
	}
}

// lonelypsdContainer is a StatefulSet container that runs lonelypsd.
type lonelypsdContainer struct {
	w    workload
	sts  *appsv1.StatefulSet
	ct   *corev1.Container
	argv []string // the full command line
	args []string // what follows the lonelypsd binary in argv
}

// lonelypsdContainers lists the StatefulSet containers that run lonelypsd.
func (c *checker) lonelypsdContainers(img *image) []lonelypsdContainer {
	var out []lonelypsdContainer
	for _, w := range c.workloads() {
		sts, ok := w.o.obj.(*appsv1.StatefulSet)
		if !ok {
			continue
		}
		for i := range w.spec.Containers {
			ct := &w.spec.Containers[i]
			if argv, at := lonelypsdArgv(ct, img); at >= 0 {
				out = append(out, lonelypsdContainer{w: w, sts: sts, ct: ct, argv: argv, args: argv[at+1:]})
			}
		}
	}
	return out
}

// lookup resolves a variable of the container for pod <sts>-0.
func (n *node) lookup(name string) (string, bool) {
	for _, e := range n.ct.Env {
		if e.Name != name {
			continue
		}
		if e.ValueFrom == nil {
			return e.Value, true
		}
		if fr := e.ValueFrom.FieldRef; fr != nil {
			switch fr.FieldPath {
			case "metadata.name":
				return n.podName, true
			case "metadata.namespace":
				return n.nsMarker, true
			}
		}
		return "<" + name + ">", true
	}
	return "", false
}

func (c *checker) parseNodeFlags(o object, where string, n *node, args []string, flags map[string]bool) {
	// Environment first; the command line wins.
	for _, e := range n.ct.Env {
		f, ok := envFlag(e.Name)
		if !ok {
			continue
		}
		if _, known := flags[f]; !known {
			c.errf(o, "%s: env %s is no flag of lonelypsd serve (--%s); lonelypsd ignores it", where, e.Name, f)
			continue
		}
		v := e.Value
		if e.ValueFrom != nil {
			v, _ = n.lookup(e.Name)
		}
		n.raw[f] = v
		n.val[f], _ = expand(v, n.lookup)
	}
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			if i+1 < len(args) {
				c.errf(o, "%s: lonelypsd serve takes no arguments after --: %q", where, args[i+1:])
			}
			break
		}
		if !strings.HasPrefix(a, "-") || a == "-" {
			c.errf(o, "%s: %q is not a flag; lonelypsd serve refuses arguments", where, a)
			break
		}
		name, value, hasValue := strings.Cut(strings.TrimLeft(a, "-"), "=")
		takesValue, known := flags[name]
		if !known {
			c.errf(o, "%s: lonelypsd serve has no flag --%s (see lonelypsd help serve)", where, name)
			continue
		}
		if takesValue && !hasValue {
			if i+1 >= len(args) {
				c.errf(o, "%s: --%s needs a value", where, name)
				break
			}
			i++
			value = args[i]
		}
		if !takesValue {
			if !hasValue {
				value = "true"
			} else if _, err := strconv.ParseBool(value); err != nil {
				c.errf(o, "%s: --%s=%s: want true or false", where, name, value)
			}
		}
		n.raw[name] = value
		n.val[name], _ = expand(value, n.lookup)
	}
	for _, req := range requiredFlags() {
		if _, ok := n.raw[req]; !ok {
			c.errf(o, "%s: --%s is required by lonelypsd serve", where, req)
		}
	}
}

// hostPort splits v, a HOST:PORT with a fixed port; one that does not
// split is an error of what (the flag or --join entry that gave v), and ok
// is false.
func (c *checker) hostPort(o object, where, what, v string) (host string, port int32, ok bool) {
	h, p, err := net.SplitHostPort(v)
	if err != nil {
		c.errf(o, "%s: %s: %v", where, what, err)
		return "", 0, false
	}
	if port, ok = atoiPort(p); !ok {
		c.errf(o, "%s: %s: %q needs a fixed port", where, what, v)
		return "", 0, false
	}
	return h, port, true
}

// checkNode checks one lonelypsd container's effective flags against its
// pod, the StatefulSet, the other objects and the image.
func (c *checker) checkNode(o object, where string, n *node, flags map[string]bool, img *image) {
	ports := map[int32]string{}
	for _, p := range n.ct.Ports {
		ports[p.ContainerPort] = p.Name
	}
	// Node id: the pod name, so every pod has its own, stable across
	// restarts and rescheduling.
	if id, ok := n.get("node-id"); ok && id != n.podName {
		c.errf(o, "%s: --node-id=%s is not the pod name (an env var from fieldRef metadata.name): every pod would get the same id", where, n.raw["node-id"])
	}
	listen := c.checkListen(o, where, n, ports)
	c.checkAdvertise(o, where, n, listen)
	joins := c.checkClusterForming(o, where, n)
	for _, j := range joins {
		c.checkJoin(o, where, j, n, listen["http-addr"])
	}
	// Data: on the pod's persistent volume.
	if dir, ok := n.get("data-dir"); ok {
		c.checkDataDir(o, where, dir, n)
	}
	c.checkNodeSecrets(o, where, n, len(joins) > 0)
	tls := c.checkTLSFiles(o, where, n)
	c.checkProbe(o, where, "readinessProbe", n.ct.ReadinessProbe, "/readyz", listen["http-addr"], ports, tls)
	c.checkProbe(o, where, "livenessProbe", n.ct.LivenessProbe, "/healthz", listen["http-addr"], ports, tls)
	if n.ct.StartupProbe != nil {
		c.checkProbe(o, where, "startupProbe", n.ct.StartupProbe, "/healthz", listen["http-addr"], ports, tls)
	}
	c.checkShutdown(o, where, n)
	c.checkMemory(o, where, n)
	c.checkServiceLinks(o, where, n, flags)
	if img != nil {
		c.checkImage(o, where, n, ports, img)
	}
	c.checkClientService(o, where, n, listen["http-addr"])
}

// checkListen checks that --http-addr and --raft-addr each listen on a
// declared container port of their own, and returns flag -> port.
func (c *checker) checkListen(o object, where string, n *node, ports map[int32]string) map[string]int32 {
	listen := map[string]int32{}
	for _, f := range []string{"http-addr", "raft-addr"} {
		v, ok := n.get(f)
		if !ok {
			continue
		}
		_, port, ok := c.hostPort(o, where, "--"+f, v)
		if !ok {
			continue
		}
		listen[f] = port
		if _, ok := ports[port]; !ok {
			c.errf(o, "%s: --%s listens on %d, which is not a containerPort", where, f, port)
		}
	}
	if listen["http-addr"] != 0 && listen["http-addr"] == listen["raft-addr"] {
		c.errf(o, "%s: --http-addr and --raft-addr use the same port", where)
	}
	return listen
}

// checkAdvertise checks the advertised addresses: this pod's stable DNS
// name under the governing headless Service, and the port the node
// listens on (DNS of a headless Service gives pod addresses: there is no
// port mapping).
func (c *checker) checkAdvertise(o object, where string, n *node, listen map[string]int32) {
	for _, pair := range [][2]string{{"advertise-http", "http-addr"}, {"advertise-raft", "raft-addr"}} {
		adv, ok := n.get(pair[0])
		from := "--" + pair[0]
		if !ok {
			adv, ok = n.get(pair[1])
			from = "--" + pair[1] + " (no --" + pair[0] + ")"
		}
		if !ok {
			continue
		}
		host, port, ok := c.hostPort(o, where, from, adv)
		if !ok {
			continue
		}
		if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
			c.errf(o, "%s: %s %s is a wildcard address: lonelypsd refuses to start; set --%s to the pod's DNS name", where, from, adv, pair[0])
			continue
		}
		if net.ParseIP(host) != nil {
			c.errf(o, "%s: %s %s is an IP address: every pod would advertise the same one, and pod IPs change", where, from, adv)
			continue
		}
		c.checkPodDNSName(o, where, from, host, n)
		if lp := listen[pair[1]]; lp != 0 && port != lp {
			c.errf(o, "%s: %s advertises port %d but --%s listens on %d", where, from, port, pair[1], lp)
		}
	}
}

// checkClusterForming checks that --bootstrap, --bootstrap-expect and
// --join let the replicas form one cluster, and returns the --join
// entries.
func (c *checker) checkClusterForming(o object, where string, n *node) []string {
	bootstrap := n.val["bootstrap"] == "true"
	expect := 0
	if v, ok := n.get("bootstrap-expect"); ok {
		e, err := strconv.Atoi(v)
		if err != nil || e < 0 {
			c.errf(o, "%s: --bootstrap-expect=%s is not a count", where, v)
		}
		expect = e
	}
	joins := splitList(n.val["join"])
	switch {
	case bootstrap && n.w.replicas > 1:
		c.errf(o, "%s: --bootstrap with %d replicas: every pod would form a cluster of its own; use --join and --bootstrap-expect", where, n.w.replicas)
	case !bootstrap && len(joins) == 0:
		c.errf(o, "%s: neither --bootstrap nor --join: the nodes would wait forever for a leader to add them", where)
	case expect > 0 && len(joins) == 0:
		c.errf(o, "%s: --bootstrap-expect without --join: the nodes cannot find each other", where)
	}
	if expect > int(n.w.replicas) {
		c.errf(o, "%s: --bootstrap-expect=%d but only %d replicas: the cluster would never form", where, expect, n.w.replicas)
	} else if expect > 0 && expect < int(n.w.replicas) {
		c.note("%s: --bootstrap-expect=%d < %d replicas: right once the cluster exists; for a first start set it to the replica count", o.name, expect, n.w.replicas)
	}
	if expect > 1 && n.sts.Spec.PodManagementPolicy != appsv1.ParallelPodManagement {
		c.errf(o, "%s: --bootstrap-expect=%d needs podManagementPolicy: Parallel: with OrderedReady the second pod waits for the first to be ready, which it is not before the cluster forms", where, expect)
	}
	return joins
}

// checkNodeSecrets checks the secrets files the node reads, and that a
// clustered node has a cluster secret at all.
func (c *checker) checkNodeSecrets(o object, where string, n *node, clustered bool) {
	secretsFile, hasSecrets := n.get("secrets")
	if hasSecrets {
		c.checkSecretsFile(o, where, secretsFile, n, true)
	}
	if f, ok := n.get("cluster-secret-file"); ok {
		c.checkSecretsFile(o, where, f, n, false)
	} else if !hasSecrets && clustered {
		c.errf(o, "%s: no --secrets and no --cluster-secret-file: the /cluster endpoints would accept any caller in the cluster network", where)
	}
}

// checkTLSFiles checks that the TLS files are mounted and that cert and
// key come together, and reports whether the API is served over https.
func (c *checker) checkTLSFiles(o object, where string, n *node) bool {
	_, tls := n.get("tls-cert")
	for _, f := range []string{"tls-cert", "tls-key", "tls-ca"} {
		if v, ok := n.get(f); ok {
			if m, rel := mountOf(n.ct, path.Clean(v)); m == nil || rel == "" {
				c.errf(o, "%s: --%s %s is on no volume: the file would not exist", where, f, v)
			}
		}
	}
	if _, key := n.get("tls-key"); tls != key {
		c.errf(o, "%s: --tls-cert and --tls-key go together", where)
	}
	return tls
}

// checkShutdown checks that the grace period covers the preStop sleep,
// --shutdown-timeout and closing Raft.
func (c *checker) checkShutdown(o object, where string, n *node) {
	shutdown := 10 * time.Second
	if v, ok := n.get("shutdown-timeout"); ok {
		d, err := time.ParseDuration(v)
		if err != nil {
			c.errf(o, "%s: --shutdown-timeout=%s: %v", where, v, err)
		}
		shutdown = d
	}
	grace := 30 * time.Second
	if g := n.w.spec.TerminationGracePeriodSeconds; g != nil {
		grace = time.Duration(*g) * time.Second
	}
	var preStop time.Duration
	if l := n.ct.Lifecycle; l != nil && l.PreStop != nil && l.PreStop.Sleep != nil {
		preStop = time.Duration(l.PreStop.Sleep.Seconds) * time.Second
	}
	const closeMargin = 5 * time.Second // Raft leadership transfer and closing the stores
	if need := preStop + shutdown + closeMargin; grace < need {
		c.errf(o, "%s: terminationGracePeriodSeconds %v < preStop %v + --shutdown-timeout %v + %v to close Raft: the kubelet would kill the node mid-shutdown", where, grace, preStop, shutdown, closeMargin)
	}
}

// checkMemory checks the Go heap limit against the container's memory
// limit, and the memory request against what a node uses idle.
func (c *checker) checkMemory(o object, where string, n *node) {
	ct := n.ct
	if lim, ok := ct.Resources.Limits[corev1.ResourceMemory]; ok {
		for _, e := range ct.Env {
			if e.Name != "GOMEMLIMIT" || e.ValueFrom != nil {
				continue
			}
			b, err := goMemLimit(e.Value)
			if err != nil {
				c.errf(o, "%s: GOMEMLIMIT=%s: %v", where, e.Value, err)
			} else if b >= lim.Value() {
				c.errf(o, "%s: GOMEMLIMIT=%s is not below the memory limit %s", where, e.Value, lim.String())
			}
		}
	}
	if req, ok := ct.Resources.Requests[corev1.ResourceMemory]; ok && req.Cmp(resource.MustParse("32Mi")) < 0 {
		c.errf(o, "%s: a memory request of %s is below what a node uses idle", where, req.String())
	}
}

// checkServiceLinks: Kubernetes puts <SERVICE>_PORT... variables in every
// container unless enableServiceLinks is false; one named like
// LONELYPSD_<FLAG> would set that flag.
func (c *checker) checkServiceLinks(o object, where string, n *node, flags map[string]bool) {
	if n.w.spec.EnableServiceLinks != nil && !*n.w.spec.EnableServiceLinks {
		return
	}
	for _, so := range c.objs {
		svc, ok := so.obj.(*corev1.Service)
		if !ok {
			continue
		}
		for _, v := range serviceLinkVars(svc) {
			if f, ok := envFlag(v); ok {
				if _, known := flags[f]; known {
					c.errf(o, "%s: Service %s puts %s in the environment, which lonelypsd reads as --%s; set enableServiceLinks: false", where, svc.Name, v, f)
				}
			}
		}
	}
}

// checkImage compares the container with what the Dockerfile declares:
// ports, the data volume and the user.
func (c *checker) checkImage(o object, where string, n *node, ports map[int32]string, img *image) {
	for p, name := range ports {
		if !img.expose[p] {
			c.errf(o, "%s: containerPort %d (%s) is not EXPOSEd by the Dockerfile", where, p, name)
		}
	}
	for p := range img.expose {
		if _, ok := ports[p]; !ok {
			c.errf(o, "%s: the Dockerfile EXPOSEs %d, which the container does not declare", where, p)
		}
	}
	if dir, ok := n.get("data-dir"); ok && len(img.volumes) > 0 && !slices.Contains(img.volumes, path.Clean(dir)) {
		c.errf(o, "%s: --data-dir %s is not the Dockerfile's VOLUME %v", where, dir, img.volumes)
	}
	if sc := n.w.spec.SecurityContext; sc != nil && sc.RunAsUser != nil && img.user != "" {
		uid, _, _ := strings.Cut(img.user, ":")
		if uid != strconv.FormatInt(*sc.RunAsUser, 10) {
			c.errf(o, "%s: runAsUser %d differs from the Dockerfile's USER %s", where, *sc.RunAsUser, img.user)
		}
	}
}

// checkClientService checks that clients have a Service that routes to
// ready pods' API port.
func (c *checker) checkClientService(o object, where string, n *node, httpPort int32) {
	for _, so := range c.objs {
		if svc, ok := so.obj.(*corev1.Service); ok && svc.Spec.ClusterIP != corev1.ClusterIPNone &&
			len(svc.Spec.Selector) > 0 && labels.SelectorFromSet(svc.Spec.Selector).Matches(labels.Set(n.w.labels)) {
			for _, p := range svc.Spec.Ports {
				if cp, ok := containerPort(n.w, p.TargetPort); ok && cp == httpPort {
					return
				}
			}
		}
	}
	c.errf(o, "%s: no (non-headless) Service routes to the HTTP API port: clients cannot reach the nodes", where)
}

// checkPodDNSName checks that host is <this pod>.<governing service>[.<ns>[.svc[.<domain>]]].
func (c *checker) checkPodDNSName(o object, where, from, host string, n *node) {
	labels := strings.Split(strings.TrimSuffix(host, "."), ".")
	switch {
	case labels[0] != n.podName:
		c.errf(o, "%s: %s host %s does not start with the pod's own name (an env var from fieldRef metadata.name)", where, from, host)
	case len(labels) < 2 || labels[1] != n.sts.Spec.ServiceName:
		c.errf(o, "%s: %s host %s is not under the StatefulSet's serviceName %q: no such DNS name", where, from, host, n.sts.Spec.ServiceName)
	case len(labels) > 2 && labels[2] != n.nsMarker:
		c.note("%s: %s names namespace %q: the manifests only work there", o.name, from, labels[2])
	}
	if len(labels) > 3 && labels[3] != "svc" {
		c.errf(o, "%s: %s host %s: the fourth label must be svc", where, from, host)
	}
}

func (c *checker) checkJoin(o object, where, j string, n *node, httpPort int32) {
	host, port, ok := c.hostPort(o, where, "--join entry "+j, j)
	if !ok {
		return
	}
	if httpPort != 0 && port != httpPort {
		c.errf(o, "%s: --join entry %s: port %d is not the nodes' HTTP port %d (headless DNS gives pod addresses, without port mapping)", where, j, port, httpPort)
	}
	first := strings.Split(host, ".")[0]
	if ord, ok := strings.CutPrefix(first, n.sts.Name+"-"); ok && ord != "" && strings.Trim(ord, "0123456789") == "" {
		c.checkPodDNSNameOf(o, where, j, host, n)
		return
	}
	svc := c.service(first)
	if svc == nil {
		c.errf(o, "%s: --join entry %s names no Service of the deployment", where, j)
		return
	}
	if svc.Spec.ClusterIP != corev1.ClusterIPNone {
		c.errf(o, "%s: --join Service %s is not headless: its name resolves to one virtual IP, so a node would see one peer, not all", where, svc.Name)
	}
	if !svc.Spec.PublishNotReadyAddresses {
		c.errf(o, "%s: --join Service %s lacks publishNotReadyAddresses: true: pods are ready only once the cluster has formed, and the cluster cannot form while they are missing from DNS", where, svc.Name)
	}
	if len(svc.Spec.Selector) == 0 || !labels.SelectorFromSet(svc.Spec.Selector).Matches(labels.Set(n.w.labels)) {
		c.errf(o, "%s: --join Service %s does not select the lonelypsd pods", where, svc.Name)
	}
	if rest := strings.SplitN(host, ".", 3); len(rest) > 1 && rest[1] != n.nsMarker {
		c.note("%s: --join names namespace %q: the manifests only work there", o.name, rest[1])
	}
}

// checkPodDNSNameOf accepts a join entry naming one pod: <sts>-N.<service>...
func (c *checker) checkPodDNSNameOf(o object, where, j, host string, n *node) {
	labels := strings.Split(host, ".")
	if ord, _ := strconv.Atoi(strings.TrimPrefix(labels[0], n.sts.Name+"-")); ord >= int(n.w.replicas) {
		c.errf(o, "%s: --join entry %s: %s is beyond the %d replicas", where, j, labels[0], n.w.replicas)
	}
	if len(labels) < 2 || labels[1] != n.sts.Spec.ServiceName {
		c.errf(o, "%s: --join entry %s is not under the serviceName %q", where, j, n.sts.Spec.ServiceName)
	}
}

// mountOf returns the container's mount holding p, and p relative to it.
func mountOf(ct *corev1.Container, p string) (*corev1.VolumeMount, string) {
	var best *corev1.VolumeMount
	rel := ""
	for i := range ct.VolumeMounts {
		m := &ct.VolumeMounts[i]
		mp := path.Clean(m.MountPath)
		if p == mp || strings.HasPrefix(p, mp+"/") || mp == "/" {
			if best == nil || len(mp) > len(path.Clean(best.MountPath)) {
				best, rel = m, strings.TrimPrefix(strings.TrimPrefix(p, mp), "/")
			}
		}
	}
	return best, rel
}

func (c *checker) checkDataDir(o object, where, dir string, n *node) {
	if !path.IsAbs(dir) {
		c.errf(o, "%s: --data-dir %s is relative: put it on the data volume by an absolute path", where, dir)
		return
	}
	m, _ := mountOf(n.ct, path.Clean(dir))
	claim := false
	if m != nil {
		for _, t := range n.sts.Spec.VolumeClaimTemplates {
			claim = claim || t.Name == m.Name
		}
	}
	switch {
	case m == nil:
		c.errf(o, "%s: --data-dir %s is on no volume: the container's own file system is read-only, or lost at every restart", where, dir)
	case m.ReadOnly:
		c.errf(o, "%s: --data-dir %s is on a read-only mount", where, dir)
	case !claim:
		c.errf(o, "%s: --data-dir %s is on volume %q, not on a volumeClaimTemplate: the Raft state would be lost when the pod goes", where, dir, m.Name)
	}
}

// checkSecretsFile checks that a secrets file the node reads is mounted
// from a Secret that has it, and (for broadcaster-secrets.json) that the
// template has the keys lonelypsd needs.
func (c *checker) checkSecretsFile(o object, where, file string, n *node, isSecretsJSON bool) {
	m, rel := mountOf(n.ct, path.Clean(file))
	if m == nil || rel == "" {
		c.errf(o, "%s: %s is on no volume: the file would not exist", where, file)
		return
	}
	var vol *corev1.Volume
	for i := range n.w.spec.Volumes {
		if n.w.spec.Volumes[i].Name == m.Name {
			vol = &n.w.spec.Volumes[i]
		}
	}
	if vol == nil || vol.Secret == nil {
		c.errf(o, "%s: %s is not on a Secret volume", where, file)
		return
	}
	key := rel
	if len(vol.Secret.Items) > 0 {
		key = ""
		for _, it := range vol.Secret.Items {
			if path.Clean(it.Path) == rel {
				key = it.Key
			}
		}
		if key == "" {
			c.errf(o, "%s: %s: the Secret volume %q maps no item to %s", where, file, vol.Name, rel)
			return
		}
	}
	s, _, _ := c.secret(vol.Secret.SecretName)
	if s == nil {
		return // reported with the volume
	}
	content, ok := s.StringData[key]
	if !ok {
		b, inData := s.Data[key]
		if !inData {
			c.errf(o, "%s: Secret %s has no key %q for %s", where, s.Name, key, file)
			return
		}
		content = string(b)
	}
	if !isSecretsJSON {
		return
	}
	var doc map[string]any
	if err := json.Unmarshal([]byte(content), &doc); err != nil {
		c.errf(o, "%s: Secret %s key %s is not JSON: %v", where, s.Name, key, err)
		return
	}
	if doc["version"] != "2" {
		c.errf(o, "%s: Secret %s key %s: \"version\" must be the string \"2\"", where, s.Name, key)
	}
	if _, ok := doc["cluster"]; !ok {
		if _, other := n.get("cluster-secret-file"); !other {
			c.errf(o, "%s: Secret %s key %s has no \"cluster\" secret: the nodes would not authenticate each other", where, s.Name, key)
		}
	}
	for k := range doc {
		if k != "version" && k != "to-broadcaster" && k != "to-subscriber" && k != "cluster" {
			c.errf(o, "%s: Secret %s key %s: unknown key %q", where, s.Name, key, k)
		}
	}
}

func (c *checker) checkProbe(o object, where, name string, p *corev1.Probe, wantPath string, httpPort int32, ports map[int32]string, tls bool) {
	if p == nil {
		c.errf(o, "%s: no %s (GET %s)", where, name, wantPath)
		return
	}
	if p.HTTPGet == nil {
		c.errf(o, "%s: %s must be an httpGet of %s", where, name, wantPath)
		return
	}
	if p.HTTPGet.Path != wantPath {
		c.errf(o, "%s: %s GETs %s; want %s", where, name, p.HTTPGet.Path, wantPath)
	}
	if https := p.HTTPGet.Scheme == corev1.URISchemeHTTPS; https != tls {
		want := "HTTP (the API is plain http without --tls-cert)"
		if tls {
			want = "HTTPS (--tls-cert serves the API over https only)"
		}
		c.errf(o, "%s: %s scheme must be %s", where, name, want)
	}
	port := p.HTTPGet.Port
	target := port.IntVal
	if port.StrVal != "" {
		target = 0
		for num, n := range ports {
			if n == port.StrVal {
				target = num
			}
		}
	}
	if httpPort != 0 && target != httpPort {
		c.errf(o, "%s: %s probes port %s, not the HTTP API port %d", where, name, port.String(), httpPort)
	}
}

// serviceLinkVars are the variables Kubernetes derives from a Service
// when enableServiceLinks is on.
func serviceLinkVars(s *corev1.Service) []string {
	base := strings.ToUpper(strings.ReplaceAll(s.Name, "-", "_"))
	out := []string{base + "_SERVICE_HOST", base + "_SERVICE_PORT", base + "_PORT"}
	for _, p := range s.Spec.Ports {
		proto := strings.ToUpper(string(p.Protocol))
		if proto == "" {
			proto = "TCP"
		}
		if p.Name != "" {
			out = append(out, base+"_SERVICE_PORT_"+strings.ToUpper(strings.ReplaceAll(p.Name, "-", "_")))
		}
		pre := fmt.Sprintf("%s_PORT_%d_%s", base, p.Port, proto)
		out = append(out, pre, pre+"_PROTO", pre+"_PORT", pre+"_ADDR")
	}
	return out
}

// goMemLimit parses GOMEMLIMIT as the Go runtime does (bytes, with an
// optional B, KiB, MiB, GiB or TiB suffix).
func goMemLimit(s string) (int64, error) {
	units := []struct {
		suffix string
		mult   int64
	}{{"TiB", 1 << 40}, {"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}, {"B", 1}}
	for _, u := range units {
		if num, ok := strings.CutSuffix(s, u.suffix); ok {
			v, err := strconv.ParseInt(num, 10, 64)
			if err != nil || v < 0 {
				return 0, fmt.Errorf("not a size the Go runtime reads")
			}
			return v * u.mult, nil
		}
	}
	v, err := strconv.ParseInt(s, 10, 64)
	if err != nil || v < 0 {
		return 0, fmt.Errorf("not a size the Go runtime reads")
	}
	return v, nil
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// podArgs returns the lonelypsd command line (from "serve" on) of the
// StatefulSet pod named pod in namespace ns, with $(VAR) references
// expanded as the kubelet would, and LONELYPSD_* variables of the
// container turned into flags. deploy/local/statefulset-sim.sh runs it.
func podArgs(objs []object, img *image, pod, ns string) ([]string, error) {
	c := &checker{objs: objs}
	for _, lc := range c.lonelypsdContainers(img) {
		ord, ok := strings.CutPrefix(pod, lc.sts.Name+"-")
		if !ok || ord == "" || strings.Trim(ord, "0123456789") != "" {
			continue
		}
		n := &node{w: lc.w, sts: lc.sts, ct: lc.ct, podName: pod, nsMarker: ns}
		return n.commandLine(lc.args)
	}
	return nil, fmt.Errorf("no StatefulSet pod %q runs lonelypsd", pod)
}

// commandLine expands args (the command and flags after the lonelypsd
// binary) for the node's pod and puts the container's LONELYPSD_*
// variables in as flags: the command, the environment's flags (the
// command line wins, so only those it lacks), then the command line.
func (n *node) commandLine(args []string) ([]string, error) {
	if len(args) == 0 {
		return nil, fmt.Errorf("container %s runs lonelypsd without a command", n.ct.Name)
	}
	var expanded []string
	given := map[string]bool{}
	for _, a := range args {
		v, undef := expand(a, n.lookup)
		if len(undef) > 0 {
			return nil, fmt.Errorf("argument %q: undefined $(%s)", a, strings.Join(undef, "), $("))
		}
		expanded = append(expanded, v)
		name, _, _ := strings.Cut(strings.TrimLeft(a, "-"), "=")
		given[name] = true
	}
	out := []string{expanded[0]}
	for _, e := range n.ct.Env {
		if f, ok := envFlag(e.Name); ok && !given[f] {
			v, _ := n.lookup(e.Name)
			v, _ = expand(v, n.lookup)
			out = append(out, "--"+f+"="+v)
		}
	}
	return append(out, expanded[1:]...), nil
}

// lonelypsdArgv is the container's full command line (the image's
// entrypoint when the manifest gives none) and the position of the
// lonelypsd binary in it, -1 when it does not run lonelypsd.
func lonelypsdArgv(ct *corev1.Container, img *image) ([]string, int) {
	argv := append(slices.Clone(ct.Command), ct.Args...)
	if len(ct.Command) == 0 {
		entry := []string{"lonelypsd"}
		if img != nil {
			entry = img.entrypoint
		}
		argv = append(slices.Clone(entry), ct.Args...)
	}
	return argv, slices.IndexFunc(argv, func(a string) bool { return path.Base(a) == "lonelypsd" })
}
