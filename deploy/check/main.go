// Command check validates the deployment files of lonelypsd without a
// Kubernetes cluster, a Docker daemon or any download at run time:
//
//   - the kustomization is rendered with kustomize's own library, as
//     `kubectl apply -k` would;
//   - every object, rendered and as written, is decoded strictly into the
//     Kubernetes API's Go types (k8s.io/api, the source the API's OpenAPI
//     schema is generated from): unknown fields, wrong types, duplicate
//     keys, bad quantities and missing required fields are errors;
//   - metadata, label selectors and names go through apimachinery's own
//     validation, and the references between objects are resolved
//     (selectors, named ports, serviceName, volumes, Secrets, $(VAR));
//   - the lonelypsd command line is checked against the flags lonelypsd
//     serve accepts (cmd/lonelypsd/testdata/serve-flags.txt, which a test
//     of cmd/lonelypsd keeps current) and against what a node needs to
//     form a cluster on Kubernetes;
//   - the Dockerfile is parsed (instructions, flags, exec-form
//     ENTRYPOINT, stage references), and its ports, volume and user are
//     compared with the manifests;
//   - the Prometheus rules file is decoded strictly, its expressions (and
//     the dashboard's queries) parsed with PromQL's own parser, and the
//     PrometheusRule kustomization rendered: its spec must equal the file;
//   - the Grafana dashboard uses the DS_PROMETHEUS data source variable,
//     and its panels and queries are complete.
//
// Usage (see .ci/check-manifests):
//
//	go run . -kustomize ../kubernetes -extra ../kubernetes/secret.example.yaml \
//	  -dockerfile ../Dockerfile -serve-flags ../../cmd/lonelypsd/testdata/serve-flags.txt
package main

import (
	"flag"
	"fmt"
	"os"
	"sort"
	"strings"
)

// options says what to check.
type options struct {
	kustomize  string   // folder with kustomization.yaml
	extra      []string // templates: checked, not part of the kustomization
	dockerfile string   // optional
	serveFlags string   // cmd/lonelypsd/testdata/serve-flags.txt; optional
	monitoring string   // folder with the PrometheusRule kustomization; optional
	alerts     string   // Prometheus rules file the PrometheusRule must equal
	dashboard  string   // Grafana dashboard JSON; optional
}

// result is what a check found.
type result struct {
	objects []object
	errs    []string
	notes   []string
}

func check(o options) result {
	var r result
	objs, errs := loadKustomization(o.kustomize)
	r.errs = append(r.errs, errs...)
	c := &checker{objs: objs}
	for _, f := range o.extra {
		x, errs := loadFile(f)
		r.errs = append(r.errs, errs...)
		c.extra = append(c.extra, x...)
	}
	c.checkAll()
	var img *image
	if o.dockerfile != "" {
		var errs []string
		img, errs = checkDockerfile(o.dockerfile)
		r.errs = append(r.errs, errs...)
	}
	if o.serveFlags != "" {
		if flags, err := readServeFlags(o.serveFlags); err != nil {
			r.errs = append(r.errs, err.Error())
		} else {
			c.checkLonelypsd(flags, img)
		}
	}
	r.objects = append(objs, c.extra...)
	r.errs = append(r.errs, c.errs...)
	if o.monitoring != "" {
		mobjs, errs := checkMonitoring(o.monitoring, o.alerts)
		r.objects = append(r.objects, mobjs...)
		r.errs = append(r.errs, errs...)
	}
	if o.dashboard != "" {
		r.errs = append(r.errs, checkDashboard(o.dashboard)...)
	}
	r.notes = c.notes
	sort.Strings(r.errs)
	r.errs = dedup(r.errs)
	return r
}

func dedup(s []string) []string {
	out := s[:0]
	for i, v := range s {
		if i == 0 || v != s[i-1] {
			out = append(out, v)
		}
	}
	return out
}

func main() {
	var o options
	var extra string
	flag.StringVar(&o.kustomize, "kustomize", "deploy/kubernetes", "folder holding kustomization.yaml")
	flag.StringVar(&extra, "extra", "", "comma-separated manifests to check that are not in the kustomization (templates)")
	flag.StringVar(&o.dockerfile, "dockerfile", "", "Dockerfile to parse and compare with the manifests")
	flag.StringVar(&o.serveFlags, "serve-flags", "", "cmd/lonelypsd/testdata/serve-flags.txt, the flags lonelypsd serve accepts (without it the command line is not checked)")
	flag.StringVar(&o.monitoring, "monitoring", "", "folder holding the kustomization of the PrometheusRule (optional)")
	flag.StringVar(&o.alerts, "alerts", "", "Prometheus rules file the PrometheusRule's spec must equal (with -monitoring)")
	flag.StringVar(&o.dashboard, "dashboard", "", "Grafana dashboard JSON to check (optional)")
	podName := flag.String("pod-args", "", "print the lonelypsd command line of this StatefulSet pod, expanded, one argument a line, and exit")
	namespace := flag.String("namespace", "default", "namespace for -pod-args")
	flag.Parse()
	for _, e := range strings.Split(extra, ",") {
		if e = strings.TrimSpace(e); e != "" {
			o.extra = append(o.extra, e)
		}
	}
	if *podName != "" {
		objs, errs := loadKustomization(o.kustomize)
		var img *image
		if o.dockerfile != "" {
			var derrs []string
			img, derrs = checkDockerfile(o.dockerfile)
			errs = append(errs, derrs...)
		}
		args, err := podArgs(objs, img, *podName, *namespace)
		if err != nil {
			errs = append(errs, err.Error())
		}
		if len(errs) > 0 {
			fmt.Fprintln(os.Stderr, strings.Join(errs, "\n"))
			os.Exit(1)
		}
		for _, a := range args {
			fmt.Println(a)
		}
		return
	}
	r := check(o)
	for _, obj := range r.objects {
		fmt.Printf("checked %s %s (%s)\n", obj.kind, obj.name, obj.src)
	}
	if o.dockerfile != "" {
		fmt.Printf("checked %s\n", o.dockerfile)
	}
	for _, n := range r.notes {
		fmt.Printf("note: %s\n", n)
	}
	for _, e := range r.errs {
		fmt.Printf("ERROR: %s\n", e)
	}
	if len(r.errs) > 0 {
		fmt.Printf("%d error(s)\n", len(r.errs))
		os.Exit(1)
	}
	fmt.Println("manifests OK")
}
