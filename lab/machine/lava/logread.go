package lava

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/gzip"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/kmodlab/kmodlab/lab/machine/runner"
	"gopkg.in/yaml.v3"
)

// Record is one entry of a LAVA job log: `- {"dt": …, "lvl": …, "msg": …}`.
type Record struct {
	DT  string `yaml:"dt" json:"dt"`
	Lvl string `yaml:"lvl" json:"lvl"`
	Msg any    `yaml:"msg" json:"msg"`
}

// ParseLog reads a LAVA job log: the server's (scheduler.jobs.logs: a YAML list,
// "- {dt: …}") or lava-run's output (one JSON object a line). A line that is not a
// record (a partial last line of a log still being written, a traceback) is skipped.
func ParseLog(data []byte) []Record {
	var recs []Record
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		line := bytes.TrimPrefix(bytes.TrimSpace(sc.Bytes()), []byte("- "))
		if len(line) == 0 || line[0] != '{' {
			continue
		}
		var r Record
		if json.Unmarshal(line, &r) == nil || yaml.Unmarshal(line, &r) == nil {
			recs = append(recs, r)
		}
	}
	return recs
}

// Text is the record's message as text (a results record's map is YAML).
func (r Record) Text() string {
	switch m := r.Msg.(type) {
	case string:
		return m
	case nil:
		return ""
	default:
		b, _ := yaml.Marshal(m)
		return strings.TrimSpace(string(b))
	}
}

// Read turns a job's log into what the cell's steps did: each step's status and
// output, the files printed between markers, and everything else the device printed
// (the console: boot messages, oopses). Steps are matched to c's by index; one that
// never began is absent, one that began and never ended has status -1.
func Read(recs []Record, c runner.CellJob) *runner.CellLog {
	out := &runner.CellLog{Files: map[string][]byte{}}
	var con strings.Builder
	outputs := map[int]*strings.Builder{}
	results := map[int]*runner.StepResult{}
	var order []int
	var file string
	var fileBuf strings.Builder
	targetLines(recs, func(line string) {
		i := strings.Index(line, "KMODLAB-")
		if i < 0 {
			if file == "" {
				con.WriteString(line)
				con.WriteByte('\n')
			}
			return
		}
		if i > 0 && file == "" {
			con.WriteString(line[:i])
			con.WriteByte('\n')
		}
		m := line[i:]
		tag, rest, _ := strings.Cut(m, " ")
		switch tag {
		case "KMODLAB-OUT":
			idx, text, ok := strings.Cut(rest, ": ")
			if !ok {
				idx, text = strings.TrimSuffix(rest, ":"), ""
			}
			n, err := strconv.Atoi(idx)
			if b := outputs[n]; err == nil && b != nil {
				b.WriteString(text)
				b.WriteByte('\n')
			}
		case "KMODLAB-STEP-BEGIN":
			f := strings.Fields(rest)
			n, err := strconv.Atoi(first(f))
			if err != nil || n < 0 || n >= len(c.Steps) || results[n] != nil {
				return
			}
			s := c.Steps[n]
			results[n] = &runner.StepResult{Phase: s.Phase, Name: s.Name, Status: -1}
			outputs[n] = &strings.Builder{}
			order = append(order, n)
		case "KMODLAB-STEP-END":
			f := strings.Fields(rest)
			if len(f) < 3 {
				return
			}
			n, err1 := strconv.Atoi(f[0])
			st, err2 := strconv.Atoi(f[1])
			if res := results[n]; err1 == nil && err2 == nil && res != nil {
				res.Status, res.TimedOut = st, f[2] == "1"
			}
		case "KMODLAB-FILE-BEGIN":
			file = rest
			fileBuf.Reset()
		case "KMODLAB-FILE:":
			if file != "" {
				fileBuf.WriteString(strings.TrimSpace(rest))
			}
		case "KMODLAB-FILE-END":
			if data, err := base64.StdEncoding.DecodeString(fileBuf.String()); file != "" && err == nil {
				out.Files[file] = data
			}
			file = ""
		}
	})
	for _, n := range order {
		res := results[n]
		res.Output = outputs[n].String()
		out.Steps = append(out.Steps, *res)
	}
	out.Console = con.String()
	return out
}

// targetLines calls fn with each line the device printed, in order. LAVA logs the
// device's output with every double quote escaped (and carriage returns, escape
// characters and empty lines dropped): the quotes are undone.
func targetLines(recs []Record, fn func(line string)) {
	for _, r := range recs {
		if r.Lvl != "target" {
			continue
		}
		text := strings.ReplaceAll(strings.ReplaceAll(r.Text(), "\r", ""), `\"`, `"`)
		for _, line := range strings.Split(text, "\n") {
			fn(line)
		}
	}
}

func first(f []string) string {
	if len(f) == 0 {
		return ""
	}
	return f[0]
}

// Pack makes the cell's files one gzipped tar, with paths relative to / (the test
// unpacks it with tar -C /), directories made as needed.
func Pack(files []runner.CellFile) ([]byte, error) {
	var buf bytes.Buffer
	gz, _ := gzip.NewWriterLevel(&buf, gzip.BestCompression)
	tw := tar.NewWriter(gz)
	dirs := map[string]bool{}
	for _, f := range files {
		if !strings.HasPrefix(f.Remote, "/") {
			return nil, fmt.Errorf("file %s: remote path %q is not absolute", f.Local, f.Remote)
		}
		rel := strings.TrimPrefix(f.Remote, "/")
		parts := strings.Split(rel, "/")
		for i := 1; i < len(parts); i++ {
			d := strings.Join(parts[:i], "/") + "/"
			if !dirs[d] {
				dirs[d] = true
				if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: d, Mode: 0o755}); err != nil {
					return nil, err
				}
			}
		}
		data, err := os.ReadFile(f.Local)
		if err != nil {
			return nil, err
		}
		mode := f.Mode
		if mode == 0 {
			mode = 0o644
		}
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: rel, Mode: int64(mode.Perm()), Size: int64(len(data))}); err != nil {
			return nil, err
		}
		if _, err := tw.Write(data); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	if err := gz.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// Inline is the archive as the test's one-line base64.
func Inline(archive []byte) string { return base64.StdEncoding.EncodeToString(archive) }
