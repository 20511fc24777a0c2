package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/promql/parser"
	"sigs.k8s.io/yaml"
)

// ruleFile is a Prometheus rules file (rule_files: of prometheus.yml) and
// the spec of a PrometheusRule, decoded strictly: a misspelled key is an
// error here rather than a rule Prometheus silently never evaluates.
type ruleFile struct {
	Groups []ruleGroup `json:"groups"`
}

type ruleGroup struct {
	Name     string `json:"name"`
	Interval string `json:"interval,omitempty"`
	Rules    []rule `json:"rules"`
}

type rule struct {
	Alert       string            `json:"alert,omitempty"`
	Record      string            `json:"record,omitempty"`
	Expr        string            `json:"expr"`
	For         string            `json:"for,omitempty"`
	Labels      map[string]string `json:"labels,omitempty"`
	Annotations map[string]string `json:"annotations,omitempty"`
}

// prometheusRule is the part of monitoring.coreos.com/v1 PrometheusRule
// the deployment uses; k8s.io/api does not define it.
type prometheusRule struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Metadata   struct {
		Name      string            `json:"name"`
		Namespace string            `json:"namespace,omitempty"`
		Labels    map[string]string `json:"labels,omitempty"`
	} `json:"metadata"`
	Spec ruleFile `json:"spec"`
}

// checkRules reports what makes rf unusable as alerting rules: every
// alert needs an expression PromQL's own parser accepts, a Prometheus
// duration in for:, a severity and a summary.
func checkRules(src string, rf ruleFile) []string {
	var errs []string
	if len(rf.Groups) == 0 {
		errs = append(errs, src+": no rule groups")
	}
	for gi, g := range rf.Groups {
		if g.Name == "" {
			errs = append(errs, fmt.Sprintf("%s: groups[%d] has no name", src, gi))
		}
		for ri, r := range g.Rules {
			where := fmt.Sprintf("%s: groups[%d].rules[%d] (%s)", src, gi, ri, r.Alert+r.Record)
			if (r.Alert == "") == (r.Record == "") {
				errs = append(errs, where+": needs exactly one of alert and record")
			}
			if strings.TrimSpace(r.Expr) == "" {
				errs = append(errs, where+": expr is empty")
			} else if _, err := parser.ParseExpr(r.Expr); err != nil {
				errs = append(errs, fmt.Sprintf("%s: expr: %v", where, err))
			}
			if r.For != "" {
				if _, err := model.ParseDuration(r.For); err != nil {
					errs = append(errs, fmt.Sprintf("%s: for %q: %v", where, r.For, err))
				}
			}
			if r.Alert == "" {
				continue
			}
			if r.Labels["severity"] == "" {
				errs = append(errs, where+": alert has no severity label")
			}
			if r.Annotations["summary"] == "" || r.Annotations["description"] == "" {
				errs = append(errs, where+": alert needs summary and description annotations")
			}
		}
	}
	return errs
}

// checkMonitoring checks the Prometheus rules file alertsPath and renders
// the kustomization in dir, whose every object must be a PrometheusRule
// whose spec equals the rules file (one source of truth for both ways of
// loading the rules).
func checkMonitoring(dir, alertsPath string) ([]object, []string) {
	raw, err := os.ReadFile(alertsPath)
	if err != nil {
		return nil, []string{err.Error()}
	}
	var alerts ruleFile
	if err := yaml.UnmarshalStrict(raw, &alerts); err != nil {
		return nil, []string{fmt.Sprintf("%s: %v", alertsPath, err)}
	}
	errs := checkRules(alertsPath, alerts)
	src, docs, errs := kustomizeBuild(dir, errs)
	var objs []object
	for _, y := range docs {
		var pr prometheusRule
		if err := yaml.UnmarshalStrict(y, &pr); err != nil {
			errs = append(errs, fmt.Sprintf("%s: PrometheusRule: %v", src, err))
			continue
		}
		kind := pr.APIVersion + " " + pr.Kind
		if kind != "monitoring.coreos.com/v1 PrometheusRule" {
			errs = append(errs, fmt.Sprintf("%s: apiVersion/kind %q: this folder holds only monitoring.coreos.com/v1 PrometheusRule", src, kind))
			continue
		}
		o := object{src: src, kind: kind, name: pr.Metadata.Name, obj: &pr}
		if pr.Metadata.Name == "" {
			errs = append(errs, fmt.Sprintf("%s: required field metadata.name is missing", o))
		}
		errs = append(errs, checkRules(o.String(), pr.Spec)...)
		if !sameJSON(pr.Spec, alerts) {
			errs = append(errs, fmt.Sprintf("%s: spec differs from %s: paste the rules file under spec:", o, filepath.Base(alertsPath)))
		}
		objs = append(objs, o)
	}
	if len(objs) == 0 {
		errs = append(errs, src+": no PrometheusRule")
	}
	return objs, errs
}

// sameJSON compares two values by their JSON form, so that YAML layout
// (block or quoted strings, key order) does not matter.
func sameJSON(a, b any) bool {
	ja, err1 := json.Marshal(a)
	jb, err2 := json.Marshal(b)
	if err1 != nil || err2 != nil {
		return false
	}
	var va, vb any
	if json.Unmarshal(ja, &va) != nil || json.Unmarshal(jb, &vb) != nil {
		return false
	}
	return reflect.DeepEqual(va, vb)
}
