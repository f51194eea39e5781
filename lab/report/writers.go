package report

import (
	"encoding/xml"
	"fmt"
	"html/template"
	"strings"

	"github.com/kmodlab/kmodlab/internal/sanitize"
	"github.com/kmodlab/kmodlab/lab/judge/verdict"
)

type junitSuites struct {
	XMLName  xml.Name     `xml:"testsuites"`
	Name     string       `xml:"name,attr"`
	Tests    int          `xml:"tests,attr"`
	Failures int          `xml:"failures,attr"`
	Errors   int          `xml:"errors,attr"`
	Time     string       `xml:"time,attr"`
	Suites   []junitSuite `xml:"testsuite"`
}

type junitSuite struct {
	Name     string      `xml:"name,attr"`
	Tests    int         `xml:"tests,attr"`
	Failures int         `xml:"failures,attr"`
	Errors   int         `xml:"errors,attr"`
	Skipped  int         `xml:"skipped,attr"`
	Time     string      `xml:"time,attr"`
	Cases    []junitCase `xml:"testcase"`
}

type junitCase struct {
	Name      string        `xml:"name,attr"`
	Classname string        `xml:"classname,attr"`
	Time      string        `xml:"time,attr"`
	Failure   *junitMessage `xml:"failure,omitempty"`
	Error     *junitMessage `xml:"error,omitempty"`
	Skipped   *junitSkipped `xml:"skipped,omitempty"`
	SystemOut string        `xml:"system-out,omitempty"`
}

type junitMessage struct {
	Message string `xml:"message,attr"`
	Type    string `xml:"type,attr"`
	Text    string `xml:",chardata"`
}

// JUnit is one testsuite per target and one testcase per cell: a cell that missed its
// expectation is a failure, an infrastructure problem an error.
func (r *Run) JUnit() ([]byte, error) {
	all := junitSuites{Name: "kmodlab " + r.Job, Time: fmt.Sprintf("%.1f", r.Seconds)}
	idx := map[string]int{}
	for _, c := range r.Cells {
		i, ok := idx[c.Target]
		if !ok {
			i = len(all.Suites)
			idx[c.Target] = i
			all.Suites = append(all.Suites, junitSuite{Name: r.Job + "/" + c.Target})
		}
		s := &all.Suites[i]
		total := 0.0
		for _, v := range c.Timings {
			total += v
		}
		tc := junitCase{Name: c.ID, Classname: "kmodlab." + c.Target, Time: fmt.Sprintf("%.1f", total),
			SystemOut: strings.Join(c.Evidence, "\n") + "\nreplay: " + c.Replay}
		switch {
		case c.Verdict == verdict.Infra:
			tc.Error = &junitMessage{Message: firstLine(c.Error), Type: "infrastructure", Text: c.Error}
			s.Errors++
			all.Errors++
		case !c.Met:
			text := strings.Join(c.Evidence, "\n")
			if c.Trace != nil && c.Trace.FirstTable != "" {
				text += "\n" + c.Trace.FirstTable
			}
			tc.Failure = &junitMessage{Message: fmt.Sprintf("%s, expected %s", c.Verdict, c.Expect), Type: string(c.Verdict), Text: text}
			s.Failures++
			all.Failures++
		}
		s.Tests++
		all.Tests++
		s.Cases = append(s.Cases, tc)
		kc, kf, ks := junitTests(c)
		s.Cases = append(s.Cases, kc...)
		s.Tests += len(kc)
		all.Tests += len(kc)
		s.Failures += kf
		all.Failures += kf
		s.Skipped += ks
	}
	out, err := xml.MarshalIndent(all, "", "  ")
	if err != nil {
		return nil, err
	}
	return append([]byte(xml.Header), append(out, '\n')...), nil
}

func firstLine(s string) string {
	l, _, _ := strings.Cut(s, "\n")
	return l
}

// Markdown is the GitHub step summary. Everything in it that came from a job, a guest
// or a shard is escaped (internal/sanitize): table cells and list items as markdown
// text, the <details> summaries as HTML, crash text and trace tables in fences longer
// than any backtick run they hold, so no text can end a cell or a block early.
func (r *Run) Markdown() string {
	rows, cols, at := r.grid()
	var b strings.Builder
	fmt.Fprintf(&b, "## kmodlab: %s\n\n", md(r.Job))
	escCols := make([]string, len(cols))
	for i, c := range cols {
		escCols[i] = md(c)
	}
	fmt.Fprintf(&b, "| target | %s |\n|---|%s\n", strings.Join(escCols, " | "), strings.Repeat("---|", len(cols)))
	for _, t := range rows {
		fmt.Fprintf(&b, "| %s |", md(t))
		for _, col := range cols {
			c := at[[2]string{t, col}]
			switch {
			case c == nil:
				b.WriteString(" - |")
			case c.Met:
				fmt.Fprintf(&b, " %s%s |", md(c.Verdict), c.rateSuffix())
			default:
				fmt.Fprintf(&b, " **%s**%s (expected %s) |", md(c.Verdict), c.rateSuffix(), md(c.Expect))
			}
		}
		b.WriteString("\n")
	}
	fmt.Fprintf(&b, "\nExit code %d; %.0f s.\n", r.Code(), r.Seconds)
	for _, c := range r.Cells {
		if !c.Met {
			fmt.Fprintf(&b, "\n- **%s**: %s, expected %s: %s\n", md(c.ID), md(c.Verdict), md(c.Expect), md(strings.Join(c.Reasons, "; ")))
		}
	}
	h := sanitize.HTML
	for _, c := range r.Cells {
		if c.Crash != nil && c.Attributed {
			fmt.Fprintf(&b, "\n<details><summary>%s: %s</summary>\n\n%s\n\n%s</details>\n", h(c.ID), h(c.Crash.Title), md(c.Attribution), sanitize.MDFence(c.Crash.Text))
		}
		if c.Trace == nil || c.Trace.First == nil {
			continue
		}
		fmt.Fprintf(&b, "\n<details><summary>%s: %s</summary>\n\n", h(c.ID), h(strings.Join(c.Evidence, "; ")))
		fmt.Fprintf(&b, "%s: %s\n\n%s\nReplay: %s\n</details>\n", md(c.Trace.First.Kind), md(c.Trace.First.Detail), sanitize.MDFence(c.Trace.FirstTable), sanitize.MDCode(c.Replay))
	}
	return b.String()
}

var htmlTmpl = template.Must(template.New("r").Funcs(template.FuncMap{
	"cls": func(c *Cell) string {
		if c == nil {
			return ""
		}
		s := class(c.Verdict)
		if !c.Met {
			s += " missed"
		}
		return s
	},
	"chart":      chart,
	"verdictCSS": verdictCSS,
}).Parse(`<!doctype html>
<html><head><meta charset="utf-8"><title>kmodlab: {{.R.Job}}</title>
<style>
body{font-family:sans-serif;margin:2em;color:#222}
table.m{border-collapse:collapse}
.m td,.m th{border:1px solid #ccc;padding:.4em .8em;text-align:center}
{{verdictCSS}}.fail{background:#f7c6a0}.pass{background:#d4f0d4}.skip,.todo{background:#eee}.missed{outline:3px solid #c00}
pre{background:#f6f6f6;padding:.6em;overflow:auto;font-size:85%;text-align:left}
</style></head><body>
<h1>kmodlab: {{.R.Job}}</h1>
<p>{{.R.JobFile}} · started {{.R.Started.Format "2006-01-02 15:04:05 MST"}} · {{printf "%.0f" .R.Seconds}} s · exit code {{.R.ExitCode}}</p>
<table class="m"><tr><th>target</th>{{range .Cols}}<th>{{.}}</th>{{end}}</tr>
{{range $t := .Rows}}<tr><th>{{$t}}</th>{{range $c := $.Cols}}{{with index $.At (printf "%s|%s" $t $c)}}<td class="{{cls .}}"><a href="#{{.ID}}">{{.Verdict}}</a>{{with .Rate}}<br><small>{{.}}</small>{{end}}</td>{{else}}<td>-</td>{{end}}{{end}}</tr>
{{end}}</table>
{{range .R.Cells}}
<h2 id="{{.ID}}">{{.ID}}: {{.Verdict}}{{if not .Met}} (expected {{.Expect}}){{end}}</h2>
<ul>{{range .Evidence}}<li>{{.}}</li>{{end}}</ul>
{{if .Error}}<pre>{{.Error}}</pre>{{end}}
{{if .Divergences}}<p>Divergences over the stress run (ms):</p>{{chart .Divergences}}{{end}}
{{with .Trace}}{{with .First}}<p>First diverging transaction: {{.Kind}}: {{.Detail}}</p>{{end}}{{if .FirstTable}}<pre>{{.FirstTable}}</pre>{{end}}{{end}}
{{with .Stress}}{{with .Interleavings}}<p>Interleavings reached: {{range $k, $n := .}}<code>{{$k}}</code> {{$n}} · {{end}}</p>{{end}}{{end}}
{{with .Crash}}<p>Crash: {{.Title}}</p>{{if .Frames}}<ul class="frames">{{range .Frames}}{{if .Module}}<li><code>{{.String}}</code></li>{{end}}{{end}}</ul>{{end}}<pre>{{.Text}}</pre>{{end}}
{{range $t := .Tests}}<p>Test cases of step {{$t.Step}} ({{$t.Source}}):</p><table class="m"><tr><th>case</th><th>result</th><th>diagnostics</th></tr>{{range $t.Cases}}<tr><td>{{.Path}}</td><td class="{{.Status}}">{{.Status}}{{with .Directive}} ({{.}}){{end}}</td><td>{{if .Log}}<pre>{{range .Log}}{{.}}
{{end}}</pre>{{end}}</td></tr>{{end}}</table>{{with $t.Problem}}<p>KTAP stream: {{.Error}}</p>{{end}}{{end}}
{{with .Runs}}<table class="m"><tr><th>repeat</th><th>verdict</th><th>first divergence</th><th>stopped</th></tr>{{range .}}<tr><td>{{.Repeat}}</td><td>{{.Verdict}}</td><td>{{if ge .FirstDivergenceMS 0}}{{.FirstDivergenceMS}} ms{{else}}-{{end}}</td><td>{{if ge .StopMS 0}}{{.StopMS}} ms{{end}}</td></tr>{{end}}</table>{{end}}
<p>Kernel {{.Kernel}} · runner {{.Runner}} · logs in <code>{{.LogDir}}</code></p>
<p>Replay: <code>{{.Replay}}</code></p>
{{end}}
</body></html>
`))

// chart draws divergence times as a small SVG histogram (20 bins). Times below 0 are
// left out (merge refuses them; the chart does not rely on that).
func chart(ms []int64) template.HTML {
	var maxT int64 = 1
	n := 0
	for _, m := range ms {
		if m >= 0 {
			maxT = max(maxT, m)
			n++
		}
	}
	if n == 0 {
		return ""
	}
	const bins, w, h = 20, 400, 80
	var counts [bins]int
	top := 1
	for _, m := range ms {
		if m < 0 {
			continue
		}
		i := min(int(float64(m)*(bins-1)/float64(maxT)), bins-1)
		counts[i]++
		top = max(top, counts[i])
	}
	var b strings.Builder
	fmt.Fprintf(&b, `<svg width="%d" height="%d" role="img" aria-label="divergences over time">`, w, h+14)
	for i, c := range counts {
		bh := c * h / top
		fmt.Fprintf(&b, `<rect x="%d" y="%d" width="%d" height="%d" fill="#d9822b"/>`, i*w/bins, h-bh, w/bins-2, bh)
	}
	fmt.Fprintf(&b, `<text x="0" y="%d" font-size="10">0</text><text x="%d" y="%d" font-size="10" text-anchor="end">%d ms</text></svg>`, h+12, w, h+12, maxT)
	return template.HTML(b.String())
}

// HTML is a one-page report with the matrix and each cell's evidence.
func (r *Run) HTML() string {
	rows, cols, at := r.grid()
	flat := map[string]*Cell{}
	for k, v := range at {
		flat[k[0]+"|"+k[1]] = v
	}
	var b strings.Builder
	if err := htmlTmpl.Execute(&b, map[string]any{"R": r, "Rows": rows, "Cols": cols, "At": flat}); err != nil {
		return "<p>report error: " + template.HTMLEscapeString(err.Error()) + "</p>"
	}
	return b.String()
}

// rateSuffix is " 29/30" for a repeated cell: how many repeats gave its verdict.
func (c *Cell) rateSuffix() string {
	if len(c.Runs) < 2 {
		return ""
	}
	return fmt.Sprintf(" %d/%d", c.Counts(c.Verdict), len(c.Runs))
}

// md is a text for Markdown, whatever string type it has.
func md[S ~string](s S) string { return sanitize.MDText(string(s)) }

// verdictColour is each verdict's background in index.html; a verdict without one is
// caught by TestEveryVerdictHasAColour.
var verdictColour = map[verdict.Verdict]string{
	verdict.Reproduced: "#fde2c8", verdict.Crashed: "#f7b6b6", verdict.Clean: "#d4f0d4",
	verdict.Hung: "#ddd", verdict.Infra: "#ddd", verdict.CannotDetect: "#ddd",
	verdict.BuildFailed: "#e4cdf2", verdict.Built: "#d4f0d4", verdict.Inconclusive: "#fff3b0", verdict.TestFailed: "#f7c6a0",
}

// class is v's CSS class in index.html: "CANNOT-DETECT" is "cannotdetect".
func class(v verdict.Verdict) string { return strings.ToLower(strings.ReplaceAll(string(v), "-", "")) }

// verdictCSS is the style rule of every verdict's class, in verdict.All's order.
func verdictCSS() template.CSS {
	var b strings.Builder
	for _, v := range verdict.All {
		fmt.Fprintf(&b, ".%s{background:%s}", class(v), verdictColour[v])
	}
	return template.CSS(b.String())
}
