package main

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
)

// copyDeploy copies deploy/kubernetes and deploy/Dockerfile into a fresh
// folder and returns the options that check it.
func copyDeploy(t *testing.T) (options, string) {
	t.Helper()
	dst := t.TempDir()
	k8s := filepath.Join(dst, "kubernetes")
	if err := os.MkdirAll(k8s, 0o755); err != nil {
		t.Fatal(err)
	}
	entries, err := os.ReadDir("../kubernetes")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		copyFile(t, filepath.Join("../kubernetes", e.Name()), filepath.Join(k8s, e.Name()))
	}
	copyFile(t, "../Dockerfile", filepath.Join(dst, "Dockerfile"))
	return options{
		kustomize:  k8s,
		extra:      []string{filepath.Join(k8s, "secret.example.yaml")},
		dockerfile: filepath.Join(dst, "Dockerfile"),
		serveFlags: "../../cmd/lonelypsd/testdata/serve-flags.txt",
	}, dst
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// replaceInFile replaces the first old in the file at p by new; old must
// be there, or the case no longer breaks what it says.
func replaceInFile(t *testing.T, p, old, new string) {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), old) {
		t.Fatalf("%s does not contain %q: update the case", p, old)
	}
	if err := os.WriteFile(p, []byte(strings.Replace(string(b), old, new, 1)), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestRealManifestsPass(t *testing.T) {
	o, _ := copyDeploy(t)
	r := check(o)
	if len(r.errs) > 0 {
		t.Fatalf("errors:\n%s", strings.Join(r.errs, "\n"))
	}
	kinds := map[string]bool{}
	for _, obj := range r.objects {
		kinds[obj.kind] = true
	}
	for _, k := range []string{"apps/v1 StatefulSet", "v1 Service", "policy/v1 PodDisruptionBudget", "networking.k8s.io/v1 NetworkPolicy", "v1 Secret"} {
		if !kinds[k] {
			t.Errorf("no %s checked", k)
		}
	}
}

// Each case breaks one thing in a copy of the real files; the check must
// report it.
func TestBrokenManifestsFail(t *testing.T) {
	cases := []struct {
		name, file, old, new, want string
	}{
		{"unknown field", "kubernetes/statefulset.yaml", "readinessProbe:", "readynessProbe:", `unknown field "readynessProbe"`},
		{"wrong type", "kubernetes/statefulset.yaml", "replicas: 3", "replicas: three", "cannot unmarshal string"},
		{"bad quantity", "kubernetes/statefulset.yaml", "memory: 64Mi", "memory: 64MB!", "quantities must match"},
		{"duplicate key", "kubernetes/service.yaml", "  type: ClusterIP\n", "  type: ClusterIP\n  type: ClusterIP\n", "duplicate"},
		{"required field", "kubernetes/statefulset.yaml", "            - name: raft\n              containerPort: 4003\n", "            - name: raft\n", "required field spec.template.spec.containers[0].ports[1].containerPort is missing"},
		{"unknown kind", "kubernetes/poddisruptionbudget.yaml", "apiVersion: policy/v1", "apiVersion: policy/v1beta1", `"policy/v1beta1 PodDisruptionBudget" is not one this check knows`},
		{"missing resource file", "kubernetes/kustomization.yaml", "  - networkpolicy.yaml", "  - networkpolicies.yaml", "kustomize build"},
		{"selector mismatch", "kubernetes/statefulset.yaml", "  template:\n    metadata:\n      labels:\n        app.kubernetes.io/name: lonelypsd", "  template:\n    metadata:\n      labels:\n        app.kubernetes.io/name: lonelypsd-x", "spec.selector does not match spec.template.metadata.labels"},
		{"bad label value", "kubernetes/service.yaml", "app.kubernetes.io/component: api", "app.kubernetes.io/component: api/v1", "metadata.labels"},
		{"named targetPort typo", "kubernetes/service.yaml", "targetPort: http", "targetPort: htp", "targetPort htp: lonelypsd has no such container port"},
		{"unnamed ports", "kubernetes/service-internal.yaml", "    - name: raft\n      port: 4003", "    - port: 4003", "must name each"},
		{"probe port typo", "kubernetes/statefulset.yaml", "path: /readyz\n              port: http", "path: /readyz\n              port: https", `readinessProbe.httpGet.port "https"`},
		{"undefined env var", "kubernetes/statefulset.yaml", "--join=lonelypsd-internal.$(POD_NAMESPACE)", "--join=lonelypsd-internal.$(NAMESPACE)", "$(NAMESPACE) is not a variable of the container"},
		{"limit below request", "kubernetes/statefulset.yaml", "memory: 256Mi", "memory: 32Mi", "limits.memory 32Mi is below requests.memory 64Mi"},
		{"missing volume", "kubernetes/statefulset.yaml", "            - name: tmp\n              mountPath: /tmp", "            - name: scratch\n              mountPath: /tmp", `no volume or volumeClaimTemplate named "scratch"`},
		{"secret key", "kubernetes/statefulset.yaml", "- key: broadcaster-secrets.json", "- key: broadcaster.json", `key "broadcaster.json" is not in Secret`},
		{"pdb too loose", "kubernetes/poddisruptionbudget.yaml", "maxUnavailable: 1", "maxUnavailable: 2", "more than a Raft quorum can lose"},
		{"unknown lonelypsd flag", "kubernetes/statefulset.yaml", "--bootstrap-expect=3", "--bootstrap-expected=3", "lonelypsd serve has no flag --bootstrap-expected"},
		{"unknown lonelypsd env", "kubernetes/statefulset.yaml", "            - name: GOMEMLIMIT\n", "            - name: LONELYPSD_LOGLEVEL\n              value: debug\n            - name: GOMEMLIMIT\n", "env LONELYPSD_LOGLEVEL is no flag of lonelypsd serve"},
		{"constant node id", "kubernetes/statefulset.yaml", "--node-id=$(POD_NAME)", "--node-id=n1", "every pod would get the same id"},
		{"ordered ready", "kubernetes/statefulset.yaml", "podManagementPolicy: Parallel", "podManagementPolicy: OrderedReady", "needs podManagementPolicy: Parallel"},
		{"bootstrap expect too high", "kubernetes/statefulset.yaml", "--bootstrap-expect=3", "--bootstrap-expect=4", "the cluster would never form"},
		{"bootstrap on every pod", "kubernetes/statefulset.yaml", "- --bootstrap-expect=3", "- --bootstrap", "every pod would form a cluster of its own"},
		{"not published before ready", "kubernetes/service-internal.yaml", "publishNotReadyAddresses: true", "publishNotReadyAddresses: false", "lacks publishNotReadyAddresses"},
		{"join not headless", "kubernetes/statefulset.yaml", "--join=lonelypsd-internal.", "--join=lonelypsd.", "is not headless"},
		{"join wrong port", "kubernetes/statefulset.yaml", "svc.cluster.local:3003\n            - --bootstrap-expect", "svc.cluster.local:4003\n            - --bootstrap-expect", "is not the nodes' HTTP port"},
		{"advertise wildcard", "kubernetes/statefulset.yaml", "            - --advertise-raft=$(POD_NAME).lonelypsd-internal.$(POD_NAMESPACE).svc.cluster.local:4003\n", "", "is a wildcard address: lonelypsd refuses to start"},
		{"advertise wrong service", "kubernetes/statefulset.yaml", "--advertise-raft=$(POD_NAME).lonelypsd-internal.", "--advertise-raft=$(POD_NAME).lonelypsd.", "is not under the StatefulSet's serviceName"},
		{"advertise wrong port", "kubernetes/statefulset.yaml", "svc.cluster.local:4003", "svc.cluster.local:4004", "advertises port 4004 but --raft-addr listens on 4003"},
		{"data on emptyDir", "kubernetes/statefulset.yaml", "--data-dir=/var/lib/lonelypsd", "--data-dir=/tmp/lonelypsd", `on volume "tmp", not on a volumeClaimTemplate`},
		{"data on root fs", "kubernetes/statefulset.yaml", "--data-dir=/var/lib/lonelypsd", "--data-dir=/data", "is on no volume"},
		{"secrets not mounted", "kubernetes/statefulset.yaml", "--secrets=/etc/lonelypsd/broadcaster-secrets.json", "--secrets=/etc/lonelypsd/secrets.json", "maps no item to secrets.json"},
		{"no cluster secret", "kubernetes/secret.example.yaml", "},\n      \"cluster\": \"REPLACE: a long random string shared by the nodes only\"", "}", `has no "cluster" secret`},
		{"liveness on readyz", "kubernetes/statefulset.yaml", "path: /healthz\n              port: http\n            periodSeconds: 10", "path: /readyz\n              port: http\n            periodSeconds: 10", "livenessProbe GETs /readyz; want /healthz"},
		{"short grace period", "kubernetes/statefulset.yaml", "terminationGracePeriodSeconds: 30", "terminationGracePeriodSeconds: 12", "the kubelet would kill the node mid-shutdown"},
		{"gomemlimit above limit", "kubernetes/statefulset.yaml", "value: 200MiB", "value: 300MiB", "is not below the memory limit"},
		{"service links", "kubernetes/statefulset.yaml", "      enableServiceLinks: false\n", "", ""},
		{"tls without https probes", "kubernetes/statefulset.yaml", "            - --log-format=json\n", "            - --log-format=json\n            - --tls-cert=/etc/lonelypsd/broadcaster-secrets.json\n            - --tls-key=/etc/lonelypsd/broadcaster-secrets.json\n", "scheme must be HTTPS"},
		{"tls cert not mounted", "kubernetes/statefulset.yaml", "            - --log-format=json\n", "            - --log-format=json\n            - --tls-cert=/tls/tls.crt\n            - --tls-key=/etc/lonelypsd/broadcaster-secrets.json\n", "--tls-cert /tls/tls.crt is on no volume"},
		{"dockerfile port", "Dockerfile", "EXPOSE 3003 4003", "EXPOSE 3003", "containerPort 4003 (raft) is not EXPOSEd"},
		{"dockerfile shell entrypoint", "Dockerfile", `ENTRYPOINT ["/usr/local/bin/lonelypsd"]`, "ENTRYPOINT /usr/local/bin/lonelypsd", "shell form"},
		{"dockerfile stage", "Dockerfile", "COPY --from=build /out/lonelypsd", "COPY --from=builder /out/lonelypsd", "COPY --from=builder: no earlier stage"},
		{"dockerfile syntax", "Dockerfile", "EXPOSE 3003 4003", "EXPOSE", "EXPOSE needs arguments"},
		{"dockerfile bad json", "Dockerfile", `ENTRYPOINT ["/usr/local/bin/lonelypsd"]`, `ENTRYPOINT ["/usr/local/bin/lonelypsd]`, "not a JSON array of strings"},
		{"dockerfile unknown instruction", "Dockerfile", "WORKDIR /src", "WORKDIRS /src", `unknown instruction "WORKDIRS"`},
		{"dockerfile unknown flag", "Dockerfile", "COPY --from=build --chown", "COPY --from=build --owner", "COPY has no flag --owner"},
		{"dockerfile volume", "Dockerfile", `VOLUME ["/var/lib/lonelypsd"]`, `VOLUME ["/data"]`, "is not the Dockerfile's VOLUME"},
		{"dockerfile user", "Dockerfile", "USER 65532:65532", "USER 1000:1000", "differs from the Dockerfile's USER"},
		{"dockerfile expose before from", "Dockerfile", "FROM golang:1.26 AS build", "EXPOSE 3003\nVOLUME /data\nENTRYPOINT [\"lonelypsd\"]\nFROM golang:1.26 AS build", "line 11: EXPOSE before the first FROM"},
		{"dockerfile build stage removed", "Dockerfile", "FROM golang:1.26 AS build", "", "no earlier stage of that name"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			o, dir := copyDeploy(t)
			replaceInFile(t, filepath.Join(dir, tc.file), tc.old, tc.new)
			r := check(o)
			if tc.want == "" {
				// Not an error today: only checks that the change is
				// tolerated (no spurious failure).
				if len(r.errs) > 0 {
					t.Fatalf("unexpected errors:\n%s", strings.Join(r.errs, "\n"))
				}
				return
			}
			for _, e := range r.errs {
				if strings.Contains(e, tc.want) {
					return
				}
			}
			t.Fatalf("no error containing %q; got:\n%s", tc.want, strings.Join(r.errs, "\n"))
		})
	}
}

// No Service link variable collides with a flag today; a future flag
// could (a --port flag would be set by the Service "lonelypsd"'s
// LONELYPSD_PORT), and the check must then demand enableServiceLinks:
// false.
func TestServiceLinkCollision(t *testing.T) {
	o, dir := copyDeploy(t)
	replaceInFile(t, filepath.Join(dir, "kubernetes/statefulset.yaml"), "      enableServiceLinks: false\n", "")
	objs, errs := loadKustomization(o.kustomize)
	extra, errs2 := loadFile(o.extra[0])
	if len(errs)+len(errs2) > 0 {
		t.Fatal(errs, errs2)
	}
	flags, err := readServeFlags(o.serveFlags)
	if err != nil {
		t.Fatal(err)
	}
	flags["port"] = true
	c := &checker{objs: objs, extra: extra}
	c.checkLonelypsd(flags, nil)
	want := "Service lonelypsd puts LONELYPSD_PORT in the environment, which lonelypsd reads as --port"
	for _, e := range c.errs {
		if strings.Contains(e, want) {
			return
		}
	}
	t.Fatalf("no error containing %q; got:\n%s", want, strings.Join(c.errs, "\n"))
}

// The committed flag list is read as written; a list that is malformed or
// lacks serve's required flags is refused rather than read as "no flags".
func TestReadServeFlags(t *testing.T) {
	flags, err := readServeFlags("../../cmd/lonelypsd/testdata/serve-flags.txt")
	if err != nil {
		t.Fatal(err)
	}
	for name, takesValue := range map[string]bool{"node-id": true, "join": true, "bootstrap": false, "shutdown-timeout": true} {
		if got, ok := flags[name]; !ok || got != takesValue {
			t.Errorf("--%s: listed %v, takes a value %v; want listed, %v", name, ok, got, takesValue)
		}
	}
	const required = "node-id value\nhttp-addr value\nraft-addr value\ndata-dir value\n"
	cases := []struct{ name, text, want string }{
		{"no kind", required + "bootstrap\n", `"bootstrap": want NAME value or NAME bool`},
		{"unknown kind", required + "bootstrap flag\n", "want NAME value or NAME bool"},
		{"dashes", required + "--bootstrap bool\n", "want NAME value or NAME bool"},
		{"twice", required + "join value\njoin value\n", "flag join listed twice"},
		{"required missing", "# header\nnode-id value\nhttp-addr value\nraft-addr value\n", "lists no --data-dir taking a value"},
		{"required as bool", "node-id bool\nhttp-addr value\nraft-addr value\ndata-dir value\n", "lists no --node-id taking a value"},
		{"empty", "", "lists no --node-id"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "serve-flags.txt")
			if err := os.WriteFile(p, []byte(tc.text), 0o644); err != nil {
				t.Fatal(err)
			}
			_, err := readServeFlags(p)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got error %v; want one containing %q", err, tc.want)
			}
		})
	}
	if _, err := readServeFlags(filepath.Join(t.TempDir(), "missing.txt")); err == nil {
		t.Fatal("a missing list was accepted")
	}
}

// podArgs gives each pod its own expanded command line, and refuses pods
// the StatefulSet does not have.
func TestPodArgs(t *testing.T) {
	o, _ := copyDeploy(t)
	objs, errs := loadKustomization(o.kustomize)
	img, derrs := checkDockerfile(o.dockerfile)
	if len(errs)+len(derrs) > 0 {
		t.Fatal(errs, derrs)
	}
	cases := []struct {
		pod, ns string
		want    []string // arguments the command line must have
		wantErr string
	}{
		{pod: "lonelypsd-1", ns: "ns1", want: []string{"serve", "--node-id=lonelypsd-1", "--advertise-raft=lonelypsd-1.lonelypsd-internal.ns1.svc.cluster.local:4003", "--join=lonelypsd-internal.ns1.svc.cluster.local:3003"}},
		{pod: "lonelypsd-0", ns: "default", want: []string{"--node-id=lonelypsd-0", "--advertise-http=lonelypsd-0.lonelypsd-internal.default.svc.cluster.local:3003"}},
		{pod: "lonelypsd-x", ns: "default", wantErr: `no StatefulSet pod "lonelypsd-x" runs lonelypsd`},
		{pod: "lonelypsd-", ns: "default", wantErr: "no StatefulSet pod"},
		{pod: "other-0", ns: "default", wantErr: "no StatefulSet pod"},
	}
	for _, tc := range cases {
		t.Run(tc.pod, func(t *testing.T) {
			args, err := podArgs(objs, img, tc.pod, tc.ns)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("got %q, %v; want an error containing %q", args, err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if args[0] != "serve" {
				t.Errorf("args[0] = %q; want serve", args[0])
			}
			for _, w := range tc.want {
				if !slices.Contains(args, w) {
					t.Errorf("no argument %q in %q", w, args)
				}
			}
		})
	}
	// A container that runs lonelypsd with no arguments at all.
	n := &node{ct: &corev1.Container{Name: "lonelypsd"}}
	if args, err := n.commandLine(nil); err == nil || !strings.Contains(err.Error(), "runs lonelypsd without a command") {
		t.Fatalf("got %q, %v; want the error that there is no command", args, err)
	}
}

// copyMonitoring copies deploy/monitoring into a fresh folder and returns
// the options that check only it.
func copyMonitoring(t *testing.T) (options, string) {
	t.Helper()
	dst := filepath.Join(t.TempDir(), "monitoring")
	if err := os.MkdirAll(dst, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"kustomization.yaml", "prometheusrule.yaml", "alerts.yaml", "dashboard.json"} {
		copyFile(t, filepath.Join("../monitoring", f), filepath.Join(dst, f))
	}
	return options{monitoring: dst, alerts: filepath.Join(dst, "alerts.yaml"), dashboard: filepath.Join(dst, "dashboard.json")}, dst
}

func TestRealMonitoringPasses(t *testing.T) {
	o, _ := copyMonitoring(t)
	errs, objs := checkMonitoringOnly(o)
	if len(errs) > 0 {
		t.Fatalf("errors:\n%s", strings.Join(errs, "\n"))
	}
	if len(objs) != 1 || objs[0].kind != "monitoring.coreos.com/v1 PrometheusRule" {
		t.Fatalf("checked %v, want one PrometheusRule", objs)
	}
}

func checkMonitoringOnly(o options) ([]string, []object) {
	objs, errs := checkMonitoring(o.monitoring, o.alerts)
	return append(errs, checkDashboard(o.dashboard)...), objs
}

// Each case breaks one thing in a copy of deploy/monitoring.
func TestBrokenMonitoringFails(t *testing.T) {
	cases := []struct {
		name, file, old, new, want string
	}{
		{"unknown field in alerts", "alerts.yaml", "        for: 1m\n", "        for: 1m\n        severity: critical\n", `unknown field "severity"`},
		{"unknown field in rule", "prometheusrule.yaml", "          annotations:\n", "          anotations:\n", `unknown field "anotations"`},
		{"rules mismatch", "prometheusrule.yaml", "> 0.1\n", "> 0.2\n", "spec differs from alerts.yaml"},
		{"alert missing from rule", "alerts.yaml", "      - alert: LonelypsdLeaderFlapping\n", "      - alert: LonelypsdLeaderFlaps\n", "spec differs from alerts.yaml"},
		{"no severity", "alerts.yaml", "          severity: critical\n", "          team: ops\n", "alert has no severity label"},
		{"bad for", "alerts.yaml", "for: 10m", "for: ten minutes", `for "ten minutes"`},
		{"bad promql", "alerts.yaml", "> 0.1\n", "> > 0.1\n", "(LonelypsdDeliveryFailures): expr: 1:"},
		{"unbalanced promql", "alerts.yaml", "expr: up{job=~\"lonelypsd.*\"} == 0", "expr: up{job=~\"lonelypsd.*\" == 0", "(LonelypsdNodeDown): expr:"},
		{"empty expr", "alerts.yaml", "expr: increase(lonelypsd_raft_leader_changes_total[15m]) > 3", `expr: ""`, "expr is empty"},
		{"wrong kind", "prometheusrule.yaml", "kind: PrometheusRule", "kind: PrometheusRules", "this folder holds only"},
		{"missing resource", "kustomization.yaml", "  - prometheusrule.yaml", "  - prometheusrules.yaml", "kustomize build"},
		{"dashboard bad json", "dashboard.json", `"title": "lonelypsd",`, `"title": "lonelypsd"`, "dashboard.json: invalid character"},
		{"dashboard variable fixed datasource", "dashboard.json", `"uid": "${DS_PROMETHEUS}"`, `"uid": "P1809F7CD0C75ACF3"`, "variable instance: datasource is not ${DS_PROMETHEUS}"},
		{"dashboard panel fixed datasource", "dashboard.json", "\"datasource\": {\n        \"type\": \"prometheus\",\n        \"uid\": \"${DS_PROMETHEUS}\"", "\"datasource\": {\n        \"type\": \"prometheus\",\n        \"uid\": \"P1809F7CD0C75ACF3\"", "datasource is not ${DS_PROMETHEUS}"},
		{"dashboard no ds variable", "dashboard.json", "\"name\": \"DS_PROMETHEUS\",\n        \"label\"", "\"name\": \"DS\",\n        \"label\"", "no templating variable DS_PROMETHEUS"},
		{"dashboard empty expr", "dashboard.json", `"expr": "go_goroutines{instance=~\"$instance\"}"`, `"expr": ""`, "has no expr"},
		{"dashboard grid", "dashboard.json", `"w": 8,`, `"w": 30,`, "outside the 24-column grid"},
		{"dashboard bad promql", "dashboard.json", "histogram_quantile(0.99, sum by (le)", "histogram_quantile(0.99, sum by le", "query B: 1:"},
		{"dashboard old schema", "dashboard.json", `"schemaVersion": 39`, `"schemaVersion": 27`, "schemaVersion 27"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			o, dir := copyMonitoring(t)
			replaceInFile(t, filepath.Join(dir, tc.file), tc.old, tc.new)
			errs, _ := checkMonitoringOnly(o)
			for _, e := range errs {
				if strings.Contains(e, tc.want) {
					return
				}
			}
			t.Fatalf("no error containing %q; got:\n%s", tc.want, strings.Join(errs, "\n"))
		})
	}
}
