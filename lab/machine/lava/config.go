// Package lava runs a job's cells on the devices of a LAVA lab (Linaro's Automated
// Validation Architecture): each cell becomes one LAVA job (render.go), submitted
// through the lab's XML-RPC API (client.go) or run by a local lava-run (dispatch.go),
// followed until it ends (follow.go), and its log read back into what the kmodlab
// pipeline judges (logread.go). The lab entries come from runners.yaml's lava: list
// (this file); provider.go makes them a runner kind.
package lava

import (
	"bytes"
	"fmt"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/kmodlab/kmodlab/internal/yamlline"
	"github.com/kmodlab/kmodlab/lab/machine/runner"
	"gopkg.in/yaml.v3"
)

// Kind is the runner kind of LAVA labs.
const Kind runner.Kind = "lava"

// Lab is one entry of runners.yaml's lava: list: a device type of one lab, as a
// target name jobs give.
type Lab struct {
	Name       string   `yaml:"name"`        // the target name jobs use
	URL        string   `yaml:"url"`         // the lab's web address (https://lava.example.org)
	User       string   `yaml:"user"`        // the token's owner (XML-RPC logs in as user:token)
	TokenEnv   string   `yaml:"token_env"`   // the environment variable holding the token, never the token
	DeviceType string   `yaml:"device_type"` // qemu, ssh, bcm2711-rpi-4-b, …
	Tags       []string `yaml:"tags"`
	Priority   string   `yaml:"priority"`   // high, medium, low or 0..100
	Visibility string   `yaml:"visibility"` // public (default) or personal
	MaxJobs    int      `yaml:"max_jobs"`   // cells in flight at once (default 1)
	// QueueTimeout bounds the wait for a device: a job still queued after it is
	// cancelled and its cell is INFRA ("no device of type … took it"). Default 1h.
	QueueTimeout yamlline.Duration `yaml:"queue_timeout"`
	JobTimeout   yamlline.Duration `yaml:"job_timeout"` // the LAVA job's own timeout (default 30m)
	Boot         Boot              `yaml:"boot"`
	// Dispatcher runs jobs with a local lava-run instead of a server: the device
	// configuration file (a rendered device dictionary). For tests and for a device
	// on this machine.
	Dispatcher string    `yaml:"dispatcher"`
	Artefacts  Artefacts `yaml:"artefacts"`

	file string
	line int
}

// Boot says what the device boots.
type Boot struct {
	// Kernel is "kmodlab" (the lab deploys kmodlab's own kernel and initramfs of
	// Image: a qemu device) or "lab" (the lab's own kernel for the device type; the
	// deploy and boot actions are given as the lab documents them).
	Kernel string `yaml:"kernel"`
	// Image is a kmodlab target whose kernel the device runs: its headers build the
	// module (kernel: kmodlab, or a lab device running that same kernel, such as an
	// ssh device that is a kmodlab guest).
	Image string `yaml:"image"`
	// Deploy and Boot are the LAVA deploy and boot actions, verbatim (kernel: lab).
	// For device_type ssh they default to deploy to ssh, boot over ssh.
	Deploy map[string]any `yaml:"deploy"`
	Boot   map[string]any `yaml:"boot"`
	// Arch and GOARM are the device userland's (kernel: lab without image:).
	Arch  string `yaml:"arch"`
	GOARM string `yaml:"goarm"`
	// Prebuilt is a directory with <module>.ko built for the lab's kernel
	// (kernel: lab without image:).
	Prebuilt string `yaml:"prebuilt"`
}

// Artefacts says how the cell's files reach the device: inline in the job (base64,
// up to InlineMax bytes of compressed archive), or fetched from URL after Upload.
type Artefacts struct {
	InlineMax int64  `yaml:"inline_max"` // default 16 MiB
	Upload    string `yaml:"upload"`     // host command; {path} the archive, {name} its file name
	URL       string `yaml:"url"`        // where the device fetches it; {name}
}

var (
	validName = regexp.MustCompile(`^[A-Za-z0-9._-]+$`)
	envName   = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
	tagName   = regexp.MustCompile(`^[A-Za-z0-9._:-]+$`)
)

// Parse reads the lava: list of a runners.yaml (the whole file's bytes); errors say
// FILE:LINE: lava NAME: FIELD: problem. A file without lava: gives none.
func Parse(file string, data []byte) ([]*Lab, error) {
	var doc struct {
		Lava yaml.Node `yaml:"lava"`
	}
	if err := yaml.Unmarshal(data, &doc); err != nil {
		line, msg := yamlline.Locate(err)
		return nil, fmt.Errorf("%s:%d: %s", file, line, msg)
	}
	if doc.Lava.Kind == 0 {
		return nil, nil
	}
	if doc.Lava.Kind != yaml.SequenceNode {
		return nil, fmt.Errorf("%s:%d: lava: want a list of labs", file, doc.Lava.Line)
	}
	var labs []*Lab
	seen := map[string]bool{}
	for i, n := range doc.Lava.Content {
		where := fmt.Sprintf("lava[%d]", i)
		var l Lab
		dec := yaml.NewDecoder(bytes.NewReader(mustMarshal(n)))
		dec.KnownFields(true)
		if err := dec.Decode(&l); err != nil {
			line, msg := yamlline.Locate(err) // in the entry's own text
			return nil, fmt.Errorf("%s:%d: %s: %s", file, n.Line+max(line, 1)-1, where, strings.ReplaceAll(msg, " in type lava.", " in "))
		}
		l.file, l.line = file, n.Line
		if l.Name != "" && validName.MatchString(l.Name) {
			where = "lava " + l.Name
		}
		bad := func(field, format string, args ...any) error {
			return fmt.Errorf("%s:%d: %s: %s: %s", file, fieldLine(n, field), where, field, fmt.Sprintf(format, args...))
		}
		if err := l.check(bad); err != nil {
			return nil, err
		}
		if seen[l.Name] {
			return nil, bad("name", "used twice")
		}
		seen[l.Name] = true
		labs = append(labs, &l)
	}
	return labs, nil
}

func mustMarshal(n *yaml.Node) []byte {
	b, _ := yaml.Marshal(n)
	return b
}

// fieldLine is the line of a mapping's key (field may be "boot.image"), else the map's.
func fieldLine(n *yaml.Node, field string) int {
	for _, k := range strings.Split(field, ".") {
		k, _, _ = strings.Cut(k, "[")
		found := false
		if n.Kind == yaml.MappingNode {
			for i := 0; i+1 < len(n.Content); i += 2 {
				if n.Content[i].Value == k {
					n, found = n.Content[i+1], true
					break
				}
			}
		}
		if !found {
			break
		}
	}
	return n.Line
}

func (l *Lab) check(bad func(field, format string, args ...any) error) error {
	switch {
	case l.Name == "":
		return bad("name", "missing (the target name jobs give)")
	case !validName.MatchString(l.Name) || l.Name == "." || l.Name == "..":
		return bad("name", "%q: only letters, digits, '.', '_' and '-' (it reaches file names)", l.Name)
	case l.URL == "" && l.Dispatcher == "":
		return bad("url", "missing (the lab's address, https://lava.example.org; or dispatcher: a device file for a local lava-run)")
	case l.URL != "" && l.Dispatcher != "":
		return bad("dispatcher", "given with url: a lab is a server or a local dispatcher, not both")
	case l.DeviceType == "":
		return bad("device_type", "missing (the lab's device type: qemu, ssh, bcm2711-rpi-4-b, …)")
	case !validName.MatchString(l.DeviceType):
		return bad("device_type", "%q: not a device type name", l.DeviceType)
	case l.QueueTimeout < 0:
		return bad("queue_timeout", "%s: a timeout cannot be negative", time.Duration(l.QueueTimeout))
	case l.JobTimeout < 0:
		return bad("job_timeout", "%s: a timeout cannot be negative", time.Duration(l.JobTimeout))
	}
	if l.URL != "" {
		u, err := url.Parse(l.URL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return bad("url", "%q: want http(s)://host[/path]", l.URL)
		}
		if u.User != nil {
			return bad("url", "holds credentials: give user: and token_env: instead")
		}
		switch {
		case l.TokenEnv == "":
			return bad("token_env", "missing (the environment variable that holds the token; the token itself never goes in this file)")
		case !envName.MatchString(l.TokenEnv):
			return bad("token_env", "%q: not an environment variable name (a token here would be a leaked secret)", l.TokenEnv)
		case l.User == "":
			return bad("user", "missing (the token's owner: LAVA's API logs in as user and token)")
		}
	}
	for i, t := range l.Tags {
		if !tagName.MatchString(t) {
			return bad(fmt.Sprintf("tags[%d]", i), "%q: not a tag name", t)
		}
	}
	switch p := l.Priority; p {
	case "", "high", "medium", "low":
	default:
		if v, err := strconv.Atoi(p); err != nil || v < 0 || v > 100 {
			return bad("priority", "%q: want high, medium, low or 0 to 100", p)
		}
	}
	if l.Priority == "" {
		l.Priority = "medium"
	}
	switch l.Visibility {
	case "":
		l.Visibility = "public"
	case "public", "personal":
	default:
		return bad("visibility", "%q: want public or personal", l.Visibility)
	}
	if l.MaxJobs == 0 {
		l.MaxJobs = 1
	}
	if l.MaxJobs < 1 || l.MaxJobs > 256 {
		return bad("max_jobs", "%d: want 1 to 256 (0 or unset: 1)", l.MaxJobs)
	}
	b := &l.Boot
	switch b.Kernel {
	case "kmodlab":
		if b.Image == "" {
			return bad("boot.image", "missing: kernel: kmodlab deploys a kmodlab target's image (armv7-lpae, x86_64, …)")
		}
		if b.Deploy != nil || b.Boot != nil {
			return bad("boot.deploy", "kernel: kmodlab renders its own deploy and boot; give them only with kernel: lab")
		}
		if l.DeviceType != "qemu" {
			return bad("boot.kernel", "kmodlab's own image boots on a qemu device, not %q (use kernel: lab)", l.DeviceType)
		}
	case "lab":
		if l.DeviceType == "ssh" {
			if b.Deploy == nil {
				b.Deploy = map[string]any{"to": "ssh"}
			}
			if b.Boot == nil {
				b.Boot = map[string]any{"method": "ssh", "connection": "ssh", "prompts": []any{"# "}}
			}
		}
		if b.Deploy == nil {
			return bad("boot.deploy", "missing: the lab's deploy action for %s (copy it from the lab's health-check job)", l.DeviceType)
		}
		if b.Boot == nil {
			return bad("boot.boot", "missing: the lab's boot action for %s (copy it from the lab's health-check job)", l.DeviceType)
		}
		if b.Image == "" && b.Arch == "" {
			return bad("boot.arch", "missing: the device's GOARCH (arm, arm64, 386, amd64), or image: a kmodlab target running the same kernel")
		}
		if b.Image == "" && b.Prebuilt == "" {
			return bad("boot.prebuilt", "missing: a directory with the module built for the lab's kernel, or image: a kmodlab target whose headers build it")
		}
	case "":
		return bad("boot.kernel", "missing: kmodlab (the lab deploys kmodlab's image) or lab (the lab's own kernel)")
	default:
		return bad("boot.kernel", "%q: want kmodlab or lab", b.Kernel)
	}
	if b.Arch == "arm" && b.GOARM == "" {
		b.GOARM = "7"
	}
	a := &l.Artefacts
	if a.InlineMax == 0 {
		a.InlineMax = 16 << 20
	}
	if a.InlineMax < 0 {
		return bad("artefacts.inline_max", "%d: want a size in bytes", a.InlineMax)
	}
	if (a.URL == "") != (a.Upload == "") {
		return bad("artefacts.url", "url and upload go together: the host uploads the archive, the device fetches it")
	}
	if a.URL != "" && !strings.Contains(a.URL, "{name}") {
		return bad("artefacts.url", "%q has no {name}", a.URL)
	}
	return nil
}

// Where is FILE:LINE of the entry, for messages.
func (l *Lab) Where() string { return fmt.Sprintf("%s:%d", l.file, l.line) }

// APIURL is the lab's XML-RPC endpoint.
func (l *Lab) APIURL() string { return strings.TrimRight(l.URL, "/") + "/RPC2" }

// JobURL is the lab's page of a job.
func (l *Lab) JobURL(id int) string {
	if l.URL == "" {
		return ""
	}
	return fmt.Sprintf("%s/scheduler/job/%d", strings.TrimRight(l.URL, "/"), id)
}
