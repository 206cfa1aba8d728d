// promql-names reads PromQL expressions, one JSON string per line on stdin, parses each with
// Prometheus's own parser and prints one JSON object per line: the metric names the
// expression selects, or the parse error. The monitoring checks use it to prove that
// every rule and dashboard query names metrics that really exist.
package main

import (
	"bufio"
	"encoding/json"
	"os"
	"sort"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql/parser"
)

type result struct {
	Expr    string   `json:"expr"`
	Metrics []string `json:"metrics"`
	Error   string   `json:"error,omitempty"`
}

func main() {
	in := bufio.NewScanner(os.Stdin)
	in.Buffer(make([]byte, 1<<20), 1<<24)
	out := json.NewEncoder(os.Stdout)
	for in.Scan() {
		var expr string
		if err := json.Unmarshal(in.Bytes(), &expr); err != nil {
			_ = out.Encode(result{Error: "input line is not a JSON string: " + err.Error()})
			continue
		}
		r := result{Expr: expr, Metrics: []string{}}
		ast, err := parser.NewParser(parser.Options{}).ParseExpr(expr)
		if err != nil {
			r.Error = err.Error()
		} else {
			seen := map[string]bool{}
			parser.Inspect(ast, func(node parser.Node, _ []parser.Node) error {
				if vs, ok := node.(*parser.VectorSelector); ok {
					name := vs.Name
					for _, m := range vs.LabelMatchers {
						if m.Name == labels.MetricName && m.Type == labels.MatchEqual {
							name = m.Value
						}
					}
					if name == "" {
						r.Error = "a selector without a metric name: " + vs.String()
					} else {
						seen[name] = true
					}
				}
				return nil
			})
			for n := range seen {
				r.Metrics = append(r.Metrics, n)
			}
			sort.Strings(r.Metrics)
		}
		_ = out.Encode(r)
	}
}
