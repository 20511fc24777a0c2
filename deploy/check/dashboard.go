package main

import (
	"encoding/json"
	"fmt"
	"os"
	"strings"

	"github.com/prometheus/prometheus/promql/parser"
)

// grafanaVars stand in for the variables Grafana substitutes before a
// query reaches Prometheus, so that PromQL's parser can read the query.
var grafanaVars = strings.NewReplacer(
	"$__rate_interval", "5m",
	"$__interval", "1m",
	"$__range", "1h",
	"$instance", ".*",
)

// dsVar is the data source variable every panel and query must use, so
// that an import asks for the Prometheus data source instead of pointing
// at a uid that exists only on the machine the dashboard was drawn on.
const dsVar = "${DS_PROMETHEUS}"

type dashDatasource struct {
	Type string `json:"type"`
	UID  string `json:"uid"`
}

type dashPanel struct {
	ID         int             `json:"id"`
	Type       string          `json:"type"`
	Title      string          `json:"title"`
	Datasource *dashDatasource `json:"datasource"`
	GridPos    struct {
		H, W, X, Y int
	} `json:"gridPos"`
	Targets []struct {
		RefID      string          `json:"refId"`
		Expr       string          `json:"expr"`
		Datasource *dashDatasource `json:"datasource"`
	} `json:"targets"`
}

// dashboard is the part of a Grafana dashboard model this check reads;
// Grafana's model has many more optional fields, so the decode is not
// strict.
type dashboard struct {
	Title         string      `json:"title"`
	UID           string      `json:"uid"`
	SchemaVersion int         `json:"schemaVersion"`
	Panels        []dashPanel `json:"panels"`
	Templating    struct {
		List []struct {
			Name       string          `json:"name"`
			Type       string          `json:"type"`
			Query      any             `json:"query"`
			Datasource *dashDatasource `json:"datasource"`
		} `json:"list"`
	} `json:"templating"`
}

// checkDashboard reports what would make the dashboard at path fail to
// import or show nothing: bad JSON, a missing DS_PROMETHEUS variable,
// panels on another data source, queries without an expression, clashing
// ids or refIds, panels outside Grafana's 24-column grid.
func checkDashboard(path string) []string {
	raw, err := os.ReadFile(path)
	if err != nil {
		return []string{err.Error()}
	}
	var d dashboard
	if err := json.Unmarshal(raw, &d); err != nil {
		return []string{fmt.Sprintf("%s: %v", path, err)}
	}
	var errs []string
	bad := func(format string, a ...any) { errs = append(errs, path+": "+fmt.Sprintf(format, a...)) }
	if d.Title == "" || d.UID == "" {
		bad("needs a title and a uid")
	}
	if d.SchemaVersion < 36 {
		bad("schemaVersion %d: want 36 or later (data sources by uid)", d.SchemaVersion)
	}
	hasDS := false
	for _, v := range d.Templating.List {
		if v.Name == strings.Trim(dsVar, "${}") && v.Type == "datasource" && v.Query == "prometheus" {
			hasDS = true
		}
		if v.Type == "query" && (v.Datasource == nil || v.Datasource.UID != dsVar) {
			bad("variable %s: datasource is not %s", v.Name, dsVar)
		}
	}
	if !hasDS {
		bad("no templating variable DS_PROMETHEUS of type datasource, query prometheus")
	}
	ids := map[int]bool{}
	for _, p := range d.Panels {
		where := fmt.Sprintf("panel %d %q", p.ID, p.Title)
		if ids[p.ID] {
			bad("%s: duplicate panel id", where)
		}
		ids[p.ID] = true
		if p.GridPos.X < 0 || p.GridPos.W <= 0 || p.GridPos.X+p.GridPos.W > 24 || p.GridPos.H <= 0 {
			bad("%s: gridPos x %d w %d h %d is outside the 24-column grid", where, p.GridPos.X, p.GridPos.W, p.GridPos.H)
		}
		if p.Type == "row" {
			continue
		}
		if p.Datasource == nil || p.Datasource.UID != dsVar {
			bad("%s: datasource is not %s", where, dsVar)
		}
		if len(p.Targets) == 0 {
			bad("%s: no queries", where)
		}
		refs := map[string]bool{}
		for _, tg := range p.Targets {
			if strings.TrimSpace(tg.Expr) == "" {
				bad("%s: query %s has no expr", where, tg.RefID)
			} else if _, err := parser.ParseExpr(grafanaVars.Replace(tg.Expr)); err != nil {
				bad("%s: query %s: %v", where, tg.RefID, err)
			}
			if refs[tg.RefID] {
				bad("%s: duplicate refId %q", where, tg.RefID)
			}
			refs[tg.RefID] = true
			if tg.Datasource != nil && tg.Datasource.UID != dsVar {
				bad("%s: query %s datasource is not %s", where, tg.RefID, dsVar)
			}
		}
	}
	if len(d.Panels) == 0 {
		bad("no panels")
	}
	return errs
}
